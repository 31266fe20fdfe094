//===- CPUPipelines.cpp - the CPU's phases after linalg --------------------===//

#include "moir/Pipelines/CPUPipelines.h"
#include "moir/Conversion/Passes.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/Host/Host.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace moir {

void buildCPULoweringToLLVMPipeline(OpPassManager &pm, const cpu::KernelOptions &kernels) {
  host::buildEntryBufferizationPipeline(pm);
  if (kernels.enabled) {
    CPUContractionKernelsPassOptions shape;
    shape.vectorWidth = kernels.vectorWidth;
    shape.bf16Dot = kernels.bf16Dot;
    shape.int8Dot = kernels.int8Dot;
    shape.amx = kernels.amx;
    shape.int8Decode = kernels.int8Decode;
    shape.int8DecodeBits = kernels.int8DecodeBits;
    shape.prefetchBytes = kernels.prefetchBytes;
    pm.addPass(createCPUContractionKernelsPass(shape));
    if (kernels.amx)
      pm.addPass(createCPULowerAMXPass());
  }
  pm.addPass(createCPUParallelizePass());
  pm.addPass(createCPUApproximateMathPass());
  pm.addPass(createConvertLinalgToLoopsPass());
  pm.addPass(createExpandFP8Pass());
  // Work items of fused ops (moe.fused_experts) come as scf.forall.
  pm.addPass(createForallToParallelLoopPass());
  pm.addPass(createConvertSCFToOpenMPPass());
  // Inlines the allocation scopes the OpenMP conversion wraps loop bodies in
  // (they hold no allocations), so the bodies can become plain blocks.
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCPUParallelIfPass());
  pm.addPass(createCPUDynamicSchedulePass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  ConvertVectorToLLVMPassOptions vectorOptions;
  vectorOptions.x86Vector = kernels.enabled && kernels.bf16Dot;
  pm.addPass(createConvertVectorToLLVMPass(vectorOptions));
  pm.addPass(createHostToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createExportEntryPass());
  // Not only tidying: without it LLVM's -O3 made other choices (the
  // Mixtral-shaped Q4_K_M artifact's code 9% more instructions).
  pm.addPass(createCanonicalizerPass());
}

void registerCPUPipelines() {
  PassPipelineRegistration<>(
      "moir-cpu-lowering",
      "Graph phase -> LLVM dialect for CPUs with AVX-512-shaped kernels: the CPU's lowering "
      "configuration, weights bound, MoIR ops lowered to linalg, bufferized, loops and LLVM, "
      "moir_forward exported",
      [](OpPassManager &pm) {
        pm.addPass(createCPUConfigureLoweringPass());
        buildLoweringToLinalgPipeline(pm);
        buildCPULoweringToLLVMPipeline(pm, cpu::KernelOptions{});
      });
}

} // namespace moir
