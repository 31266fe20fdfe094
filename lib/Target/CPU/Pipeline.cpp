//===- Pipeline.cpp - graph phase to the LLVM dialect for CPUs -------------===//

#include "moir/Conversion/Passes.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace moir::cpu {

void buildLoweringToLinalgPipeline(OpPassManager &pm) {
  pm.addPass(createBindWeightsPass());
  pm.addPass(createOutlineLayersPass());
  pm.addPass(createConvertMoIRToLinalgPass());
  pm.addPass(createConvertElementwiseToLinalgPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildEntryBufferizationPipeline(OpPassManager &pm) {
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  // The caches come back as the very buffers passed in: drop them; the
  // logits become an out-parameter the caller owns.
  pm.addPass(bufferization::createDropEquivalentBufferResultsPass());
  pm.addPass(bufferization::createBufferResultsToOutParamsPass());
  bufferization::BufferDeallocationPipelineOptions dealloc;
  bufferization::buildBufferDeallocationPipeline(pm, dealloc);
  pm.addPass(createCPUPrepareABIPass());
}

void buildLoweringToLLVMPipeline(OpPassManager &pm, const KernelOptions &kernels) {
  buildEntryBufferizationPipeline(pm);
  if (kernels.enabled) {
    CPUContractionKernelsPassOptions shape;
    shape.vectorWidth = kernels.vectorWidth;
    shape.bf16Dot = kernels.bf16Dot;
    pm.addPass(createCPUContractionKernelsPass(shape));
  }
  pm.addPass(createCPUParallelizePass());
  pm.addPass(createCPUApproximateMathPass());
  pm.addPass(createConvertLinalgToLoopsPass());
  pm.addPass(createCPUExpandFP8Pass());
  // Work items of fused ops (moe.fused_experts) come as scf.forall.
  pm.addPass(createForallToParallelLoopPass());
  pm.addPass(createConvertSCFToOpenMPPass());
  // Inlines the allocation scopes the OpenMP conversion wraps loop bodies in
  // (they hold no allocations), so the bodies can become plain blocks.
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  ConvertVectorToLLVMPassOptions vectorOptions;
  vectorOptions.x86Vector = kernels.enabled && kernels.bf16Dot;
  pm.addPass(createConvertVectorToLLVMPass(vectorOptions));
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createConvertOpenMPToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCPUExportEntryPass());
  pm.addPass(createCanonicalizerPass());
}

} // namespace moir::cpu
