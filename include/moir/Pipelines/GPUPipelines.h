//===- GPUPipelines.h - the GPUs' phases after linalg -----------*- C++ -*-===//

#ifndef MOIR_PIPELINES_GPUPIPELINES_H
#define MOIR_PIPELINES_GPUPIPELINES_H

#include "mlir/Pass/PassManager.h"

namespace moir {
namespace gpu {
class GPUTargetInfo;
struct GPUOptions;
} // namespace gpu

/// GPUs: Linalg -> bufferized (the entry ABI), gpu.launch kernels outlined
/// into one gpu.module, async host code.
/// `matrixUnit` ("mma-sync", "mfma"; empty: none) runs moir-gpu-tensor-cores
/// with that instruction for products of at least `minRows` rows.
void buildGPUKernelPipeline(mlir::OpPassManager &pm, int64_t warpSize,
                            llvm::StringRef matrixUnit = {}, int64_t minRows = 16);
/// GPUs: the kernels lowered to the vendor's LLVM dialect (its attach and
/// conversion steps around the lowering every GPU shares).
void buildGPUDevicePipeline(mlir::OpPassManager &pm, const gpu::GPUTargetInfo &target,
                            const gpu::GPUOptions &options);
/// GPUs: host code (with gpu.binary ops) -> LLVM dialect with `moir_forward`.
void buildGPUHostLoweringPipeline(mlir::OpPassManager &pm);

/// moir-gpu-kernels and moir-gpu-device-lowering{target= chip= serialize=},
/// for moir-opt.
void registerGPUPipelines();

} // namespace moir

#endif // MOIR_PIPELINES_GPUPIPELINES_H
