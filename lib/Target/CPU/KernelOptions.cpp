//===- KernelOptions.cpp - the CPU kernels' shape for a target ------------===//

#include "moir/Target/CPU/CPUTarget.h"

#include "llvm/TargetParser/Triple.h"

using namespace llvm;

namespace moir::cpu {

Expected<KernelOptions> kernelOptionsFor(const host::HostOptions &host, bool contractionKernels,
                                         bool bf16Dot, bool int8Dot, bool amx) {
  Expected<std::unique_ptr<MCSubtargetInfo>> info = host::subtargetInfo(host);
  if (!info)
    return info.takeError();
  auto has = [&](StringRef feature) { return (*info)->checkFeatures(("+" + feature).str()); };
  Triple triple(host::resolveTriple(host));
  KernelOptions kernels;
  kernels.enabled = contractionKernels;
  kernels.vectorWidth = 4;
  if (triple.isX86()) {
    if (has("avx512f"))
      kernels.vectorWidth = 16;
    else if (has("avx"))
      kernels.vectorWidth = 8;
    kernels.bf16Dot = bf16Dot && has("avx512bf16") && has("avx512f");
    kernels.int8Dot = int8Dot && ((kernels.vectorWidth == 16 && has("avx512vnni")) ||
                                  (kernels.vectorWidth == 8 && has("avxvnni")));
    kernels.amx = amx && (kernels.bf16Dot || kernels.int8Dot) && kernels.vectorWidth == 16 &&
                  has("amx-tile") && has("amx-bf16") && has("amx-int8");
    kernels.amxInt8Cores = kernels.int8Dot && kernels.vectorWidth == 16 && has("amx-int8");
  }
  if (triple.isAArch64())
    kernels.int8Dot = int8Dot && has("dotprod");
  return kernels;
}

} // namespace moir::cpu
