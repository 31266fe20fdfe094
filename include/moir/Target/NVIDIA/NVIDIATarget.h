//===- NVIDIATarget.h - MoIR's NVIDIA backend -------------------*- C++ -*-===//

#ifndef MOIR_TARGET_NVIDIA_NVIDIATARGET_H
#define MOIR_TARGET_NVIDIA_NVIDIATARGET_H

#include <string>

namespace moir::nvidia {

/// Adds "nvidia" to the GPU target registry.
void registerNVIDIATarget();

/// $CUDA_HOME (or CUDA_PATH, CUDA_ROOT), else /usr/local/cuda.
std::string defaultToolkitPath();

} // namespace moir::nvidia

#endif
