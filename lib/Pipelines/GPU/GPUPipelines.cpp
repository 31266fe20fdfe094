//===- GPUPipelines.cpp - the GPUs' phases after linalg --------------------===//

#include "moir/Pipelines/GPUPipelines.h"
#include "moir/Conversion/Passes.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/GPU/GPUTarget.h"
#include "moir/Target/Host/Host.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using llvm::Error;

namespace moir {

void buildGPUKernelPipeline(OpPassManager &pm, int64_t warpSize, llvm::StringRef matrixUnit,
                            int64_t minRows) {
  // Same entry ABI as the CPU artifact; memref.copy becomes linalg.copy and
  // so a kernel like any other.
  host::buildEntryBufferizationPipeline(pm);
  if (!matrixUnit.empty()) {
    GPUTensorCoresPassOptions tensorCores;
    tensorCores.unit = matrixUnit.str();
    tensorCores.warpSize = warpSize;
    tensorCores.minRows = minRows;
    pm.addPass(createGPUTensorCoresPass(tensorCores));
  }
  GPUWarpReductionsPassOptions warps;
  warps.warpSize = warpSize;
  pm.addPass(createGPUWarpReductionsPass(warps));
  // Work items of lowered ops (moe.route's tokens) come as scf.forall.
  pm.addPass(createForallToParallelLoopPass());
  pm.nest<func::FuncOp>().addPass(createConvertLinalgToParallelLoopsPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createGPUOffloadPass());
  GPUMapLoopsPassOptions map;
  map.warpSize = warpSize;
  pm.addPass(createGPUMapLoopsPass(map));
  pm.nest<func::FuncOp>().addPass(createConvertParallelLoopToGpuPass());
  pm.addPass(createGPUHostMemoryPass());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createGPUMergeModulesPass());
  pm.nest<mlir::gpu::GPUModuleOp>().nest<mlir::gpu::GPUFuncOp>().addPass(
      createGPUHoistScratchPass());
  pm.nest<func::FuncOp>().addPass(createGpuAsyncRegionPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildGPUDevicePipeline(OpPassManager &pm, const gpu::GPUTargetInfo &target,
                            const gpu::GPUOptions &options) {
  target.buildAttachTarget(pm, options);
  OpPassManager &kernels = pm.nest<mlir::gpu::GPUModuleOp>();
  kernels.addPass(memref::createExpandStridedMetadataPass());
  kernels.addPass(createLowerAffinePass());
  kernels.addPass(createSCFToControlFlowPass());
  // FP8 weights' and caches' conversions as integer arithmetic (the
  // device's LLVM has no 8-bit float either).
  kernels.addPass(createExpandFP8Pass());
  target.buildMatrixConversion(kernels, options);
  kernels.addPass(target.createKernelConversion(options));
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void buildGPUHostLoweringPipeline(OpPassManager &pm) {
  pm.addPass(createExpandFP8Pass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createGpuToLLVMConversionPass());
  pm.addPass(createHostToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createExportEntryPass());
  pm.addPass(createCanonicalizerPass());
}

namespace {
struct KernelPipelineOptions : PassPipelineOptions<KernelPipelineOptions> {
  Option<int64_t> warpSize{*this, "warp-size", llvm::cl::desc("lanes per warp"),
                           llvm::cl::init(32)};
  Option<std::string> tensorCores{
      *this, "tensor-cores",
      llvm::cl::desc("matrix unit for products with many rows: mma-sync, mfma (default: none)"),
      llvm::cl::init("")};
};

struct DevicePipelineOptions : PassPipelineOptions<DevicePipelineOptions> {
  Option<std::string> target{*this, "target", llvm::cl::desc("registered GPU target"),
                             llvm::cl::init("nvidia")};
  Option<std::string> chip{*this, "chip", llvm::cl::desc("chip (default: the target's first)"),
                           llvm::cl::init("")};
  Option<std::string> serialize{*this, "serialize",
                                llvm::cl::desc("none, assembly or binary"),
                                llvm::cl::init("none")};
};

/// A pipeline that cannot be built fails the run with its reason (a pass
/// that only reports), never silently runs nothing.
} // namespace

void registerGPUPipelines() {
  PassPipelineRegistration<KernelPipelineOptions>(
      "moir-gpu-kernels",
      "Linalg phase -> gpu.launch kernels in one gpu.module and async host code "
      "(bufferize, warp reductions, offload, map loops, outline)",
      [](OpPassManager &pm, const KernelPipelineOptions &options) {
        buildGPUKernelPipeline(pm, options.warpSize, options.tensorCores);
      });
  PassPipelineRegistration<DevicePipelineOptions>(
      "moir-gpu-device-lowering",
      "Lowers gpu.module kernels for a registered GPU target and optionally "
      "serializes them (assembly text or the loadable binary)",
      [](OpPassManager &pm, const DevicePipelineOptions &options) {
        const gpu::GPUTargetInfo *target = gpu::lookupTarget(options.target);
        if (!target)
          return addPipelineError(pm, "moir-gpu-device-lowering: unknown GPU target '" + options.target + "'");
        gpu::GPUOptions gpu;
        gpu.chip = options.chip.empty() ? target->chips().front().str() : std::string(options.chip);
        if (Error err = target->validate(gpu))
          return addPipelineError(pm, "moir-gpu-device-lowering: " + toString(std::move(err)));
        buildGPUDevicePipeline(pm, *target, gpu);
        if (options.serialize != "none")
          target->buildSerialization(pm, gpu, options.serialize == "assembly");
      });
}

} // namespace moir
