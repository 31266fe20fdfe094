//===- Pipelines.cpp - the passes that build each compile phase ------------===//

#include "moir/Pipelines/Pipelines.h"
#include "moir/Conversion/Passes.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "moir/Target/TargetBackend.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

#include <algorithm>

using namespace mlir;
using llvm::createStringError;
using llvm::Error;
using llvm::Expected;
using llvm::Twine;

namespace moir {

GraphSection GraphPipelineOptions::toSection() const {
  GraphSection section;
#define MOIR_GRAPH_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) section.FIELD = FIELD;
#include "moir/Pipelines/Options.def"
  return section;
}

void buildInputPipeline(OpPassManager &pm, int64_t maxConstantElements) {
  VerifyInputContractPassOptions contract;
  contract.maxConstantElements = maxConstantElements;
  pm.addPass(createVerifyInputContractPass(contract));
}

void buildGraphPipeline(OpPassManager &pm, const GraphSection &graph,
                        int64_t maxConstantElements, bool decompose) {
  buildInputPipeline(pm, maxConstantElements);
  if (!decompose) {
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
    return;
  }
  pm.addPass(createMLADecomposeAttentionPass());
  if (graph.absorbMLA)
    pm.addPass(createMLAAbsorbWeightsPass());
  pm.addPass(createMoEDecomposeLayerPass());
  if (graph.fuseRouter || graph.fuseExperts) {
    // Canonical step ops first (e.g. trivial expert groups dropped).
    pm.addPass(createCanonicalizerPass());
    if (graph.fuseRouter)
      pm.addPass(createMoEFuseRouterPass());
    if (graph.fuseExperts)
      pm.addPass(createMoEFuseExpertsPass());
  }
  if (graph.recordRouting)
    pm.addPass(createMoERecordRoutingPass());
  // Printing a phase of an every-rank compile shows rank 0's.
  int64_t rank = std::max<int64_t>(graph.parallelRank, 0);
  if (graph.expertParallel > 1) {
    MoEExpertParallelPassOptions split;
    split.ranks = graph.expertParallel;
    split.rank = rank;
    split.loads = graph.expertLoads;
    pm.addPass(createMoEExpertParallelPass(split));
  }
  if (graph.tensorParallel > 1) {
    LLMTensorParallelPassOptions split;
    split.ranks = graph.tensorParallel;
    split.rank = rank;
    pm.addPass(createLLMTensorParallelPass(split));
  }
  if (graph.flashAttention)
    pm.addPass(createFlashAttentionPass());
  if (graph.quantizeKVCache != "none" && !graph.quantizeKVCache.empty()) {
    QuantizeKVCachePassOptions quantize;
    quantize.format = graph.quantizeKVCache;
    pm.addPass(createQuantizeKVCachePass(quantize));
  }
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildLoweringToLinalgPipeline(OpPassManager &pm, bool kQuantSuperblocks) {
  BindWeightsPassOptions bind;
  bind.superblocks = kQuantSuperblocks;
  pm.addPass(createBindWeightsPass(bind));
  pm.addPass(createOutlineLayersPass());
  pm.addPass(createConvertMoIRToLinalgPass());
  pm.addPass(createConvertElementwiseToLinalgPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

Error buildPhasePipeline(OpPassManager &pm, const TargetBackend &backend, CompilePhase phase,
                         const CompileOptions &options) {
  if (!hasPhase(backend, phase))
    return createStringError("target '" + backend.name() + "' has no phase '" +
                             stringifyCompilePhase(phase) + "'");
  switch (phase) {
  case CompilePhase::Input:
    buildInputPipeline(pm);
    return Error::success();
  case CompilePhase::Graph:
    // From the input phase: its contract check is the graph phase's first step.
    buildGraphPipeline(pm, options.graph);
    return Error::success();
  case CompilePhase::Linalg:
    if (Error err = backend.buildLoweringConfig(pm, options))
      return err;
    buildLoweringToLinalgPipeline(pm, options.graph.kQuantSuperblocks);
    return Error::success();
  default:
    return backend.buildPhase(pm, phase, options);
  }
}

namespace {
/// moir-compile's options: the target, the last phase, and every option of
/// Options.def.
struct CompilePipelineOptions : PassPipelineOptions<CompilePipelineOptions> {
  Option<std::string> target{*this, "target", llvm::cl::desc("registered target backend"),
                             llvm::cl::init("cpu")};
  Option<std::string> phase{*this, "phase", llvm::cl::desc("last phase to run"),
                            llvm::cl::init("linalg")};
#define MOIR_OPTION(SECTION, TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP)                            \
  Option<TYPE> FIELD{*this, FLAG, llvm::cl::desc(HELP), llvm::cl::init(DEFAULT)};
#include "moir/Pipelines/Options.def"

  CompileOptions toCompileOptions() const {
    CompileOptions options;
    options.target = target;
#define MOIR_IMPORT_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) options.import.FIELD = FIELD;
#define MOIR_GRAPH_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) options.graph.FIELD = FIELD;
#define MOIR_CPU_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) options.cpu.FIELD = FIELD;
#define MOIR_GPU_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) options.gpu.FIELD = FIELD;
#include "moir/Pipelines/Options.def"
    return options;
  }
};

struct FailPass : PassWrapper<FailPass, OperationPass<>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(FailPass)
  explicit FailPass(std::string message) : message(std::move(message)) {}
  StringRef getArgument() const override { return "moir-pipeline-error"; }
  void runOnOperation() override {
    getOperation()->emitError(message);
    signalPassFailure();
  }
  std::string message;
};

} // namespace

void addPipelineError(OpPassManager &pm, const Twine &message) {
  pm.addPass(std::make_unique<FailPass>(message.str()));
}

void registerPipelines() {
  PassPipelineRegistration<GraphPipelineOptions>(
      "moir-graph-pipeline",
      "Checks imported IR against the input contract, decomposes composite MoE and MLA ops, "
      "applies the fusions and canonicalizes (input -> graph phase)",
      [](OpPassManager &pm, const GraphPipelineOptions &options) {
        buildGraphPipeline(pm, options.toSection(), options.maxConstantElements,
                           options.decompose);
      });
  PassPipelineRegistration<CompilePipelineOptions>(
      "moir-compile",
      "A whole compile from the input phase to `phase` for `target`, as moirc runs it "
      "(every moirc option is an option here)",
      [](OpPassManager &pm, const CompilePipelineOptions &pipeline) {
        CompileOptions options = pipeline.toCompileOptions();
        std::optional<CompilePhase> last = parseCompilePhase(pipeline.phase);
        if (!last)
          return addPipelineError(pm, "moir-compile: unknown phase '" + pipeline.phase + "'");
        Expected<const TargetBackend *> backend = lookupTargetBackend(options.target);
        if (!backend)
          return addPipelineError(pm, "moir-compile: " + toString(backend.takeError()));
        if (Error err = validateOptions(options))
          return addPipelineError(pm, "moir-compile: " + toString(std::move(err)));
        if (Error err = (*backend)->configure(options))
          return addPipelineError(pm, "moir-compile: " + toString(std::move(err)));
        for (CompilePhase phase : (*backend)->phases()) {
          // The graph phase starts with the input phase's contract check.
          if (phase != CompilePhase::Input || *last == CompilePhase::Input)
            if (Error err = buildPhasePipeline(pm, **backend, phase, options))
              return addPipelineError(pm, "moir-compile: " + toString(std::move(err)));
          if (phase == *last)
            return;
        }
        addPipelineError(pm, "moir-compile: target '" + options.target + "' has no phase '" +
                     pipeline.phase + "'");
      });
}

} // namespace moir
