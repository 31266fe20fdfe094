//===- Pipelines.cpp - MoIR's compile phases and pipelines -----------------===//

#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;

namespace moir {

StringRef stringifyCompilePhase(CompilePhase phase) {
  switch (phase) {
  case CompilePhase::Input:
    return "input";
  case CompilePhase::Graph:
    return "graph";
  case CompilePhase::Linalg:
    return "linalg";
  case CompilePhase::LLVM:
    return "llvm";
  }
  llvm_unreachable("unknown compile phase");
}

std::optional<CompilePhase> parseCompilePhase(StringRef name) {
  return llvm::StringSwitch<std::optional<CompilePhase>>(name)
      .Case("input", CompilePhase::Input)
      .Case("graph", CompilePhase::Graph)
      .Case("linalg", CompilePhase::Linalg)
      .Case("llvm", CompilePhase::LLVM)
      .Default(std::nullopt);
}

void buildInputPipeline(OpPassManager &pm, const GraphPipelineOptions &options) {
  VerifyInputContractPassOptions contract;
  contract.maxConstantElements = options.maxConstantElements;
  pm.addPass(createVerifyInputContractPass(contract));
}

void buildGraphPipeline(OpPassManager &pm, const GraphPipelineOptions &options) {
  buildInputPipeline(pm, options);
  if (options.decomposeMLA)
    pm.addPass(createMLADecomposeAttentionPass());
  if (options.decomposeMLA && options.absorbMLA)
    pm.addPass(createMLAAbsorbWeightsPass());
  if (options.decomposeMoE)
    pm.addPass(createMoEDecomposeLayerPass());
  if (options.decomposeMoE && (options.fuseRouter || options.fuseExperts)) {
    // Canonical step ops first (e.g. trivial expert groups dropped).
    pm.addPass(createCanonicalizerPass());
    if (options.fuseRouter)
      pm.addPass(createMoEFuseRouterPass());
    if (options.fuseExperts)
      pm.addPass(createMoEFuseExpertsPass());
  }
  if (options.flashAttention)
    pm.addPass(createFlashAttentionPass());
  if (!options.quantizeKVCache.empty()) {
    QuantizeKVCachePassOptions quantize;
    quantize.format = options.quantizeKVCache;
    pm.addPass(createQuantizeKVCachePass(quantize));
  }
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildPipelineToPhase(OpPassManager &pm, CompilePhase phase,
                          const GraphPipelineOptions &options) {
  switch (phase) {
  case CompilePhase::Input:
    buildInputPipeline(pm, options);
    return;
  case CompilePhase::Graph:
    buildGraphPipeline(pm, options);
    return;
  case CompilePhase::Linalg:
    buildGraphPipeline(pm, options);
    cpu::buildLoweringToLinalgPipeline(pm);
    return;
  case CompilePhase::LLVM:
    buildGraphPipeline(pm, options);
    cpu::buildLoweringToLinalgPipeline(pm);
    cpu::buildLoweringToLLVMPipeline(pm);
    return;
  }
}

void registerPipelines() {
  PassPipelineRegistration<GraphPipelineOptions>(
      "moir-graph-pipeline",
      "Checks imported IR against the input contract, decomposes composite "
      "MoE and MLA ops and canonicalizes (input -> graph phase)",
      buildGraphPipeline);
  PassPipelineRegistration<>(
      "moir-cpu-lowering",
      "Graph phase -> LLVM dialect for CPUs: binds weights, lowers MoIR ops to "
      "linalg, bufferizes, lowers to loops and LLVM, exports moir_forward",
      [](OpPassManager &pm) {
        cpu::buildLoweringToLinalgPipeline(pm);
        cpu::buildLoweringToLLVMPipeline(pm);
      });
}

} // namespace moir
