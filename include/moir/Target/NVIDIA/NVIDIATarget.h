//===- NVIDIATarget.h - MoIR's NVIDIA backend -------------------*- C++ -*-===//

#ifndef MOIR_TARGET_NVIDIA_NVIDIATARGET_H
#define MOIR_TARGET_NVIDIA_NVIDIATARGET_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Pass/Pass.h"

#include <string>

namespace moir {
#define GEN_PASS_DECL
#include "moir/Target/NVIDIA/Passes.h.inc"
} // namespace moir

namespace moir::nvidia {

/// Adds "nvidia" to the GPU target registry (and its passes to the pass
/// registry).
void registerNVIDIATarget();

/// $CUDA_HOME (or CUDA_PATH, CUDA_ROOT), else /usr/local/cuda.
std::string defaultToolkitPath();

} // namespace moir::nvidia

#endif
