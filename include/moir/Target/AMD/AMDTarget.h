//===- AMDTarget.h - MoIR's AMD backend -------------------------*- C++ -*-===//

#ifndef MOIR_TARGET_AMD_AMDTARGET_H
#define MOIR_TARGET_AMD_AMDTARGET_H

#include "llvm/Support/Error.h"

#include <string>

namespace moir::amd {

/// Adds "amd" to the GPU target registry.
void registerAMDTarget();

/// The ROCm root MLIR's serializer reads (amdgcn/bitcode/*.bc, llvm/bin/ld.lld):
/// $ROCM_PATH if set, /opt/rocm if present, else a small root assembled in
/// the user's cache folder from Debian's rocm-device-libs and ld.lld-22.
llvm::Expected<std::string> defaultROCmRoot();

} // namespace moir::amd

#endif
