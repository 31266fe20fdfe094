//===- Pipelines.cpp - the passes that build each compile phase ------------===//

#include "moir/Pipelines/Pipelines.h"
#include "moir/Conversion/Passes.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/GPU/GPUTarget.h"
#include "moir/Target/Host/Host.h"
#include "moir/Target/TargetBackend.h"
#include "moir/Transforms/Passes.h"

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

void buildLoweringToLinalgPipeline(OpPassManager &pm) {
  pm.addPass(createBindWeightsPass());
  pm.addPass(createOutlineLayersPass());
  pm.addPass(createConvertMoIRToLinalgPass());
  pm.addPass(createConvertElementwiseToLinalgPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildCPULoweringToLLVMPipeline(OpPassManager &pm, const cpu::KernelOptions &kernels) {
  host::buildEntryBufferizationPipeline(pm);
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
  pm.addPass(createExportEntryPass());
  pm.addPass(createCanonicalizerPass());
}

void buildGPUKernelPipeline(OpPassManager &pm, int64_t warpSize) {
  // Same entry ABI as the CPU artifact; memref.copy becomes linalg.copy and
  // so a kernel like any other.
  host::buildEntryBufferizationPipeline(pm);
  GPUWarpReductionsPassOptions warps;
  warps.warpSize = warpSize;
  pm.addPass(createGPUWarpReductionsPass(warps));
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
  kernels.addPass(target.createKernelConversion(options));
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void buildGPUHostLoweringPipeline(OpPassManager &pm) {
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createGpuToLLVMConversionPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createExportEntryPass());
  pm.addPass(createCanonicalizerPass());
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
    buildLoweringToLinalgPipeline(pm);
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

struct KernelPipelineOptions : PassPipelineOptions<KernelPipelineOptions> {
  Option<int64_t> warpSize{*this, "warp-size", llvm::cl::desc("lanes per warp"),
                           llvm::cl::init(32)};
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

void fail(OpPassManager &pm, const Twine &message) {
  pm.addPass(std::make_unique<FailPass>(message.str()));
}
} // namespace

void registerPipelines() {
  PassPipelineRegistration<GraphPipelineOptions>(
      "moir-graph-pipeline",
      "Checks imported IR against the input contract, decomposes composite MoE and MLA ops, "
      "applies the fusions and canonicalizes (input -> graph phase)",
      [](OpPassManager &pm, const GraphPipelineOptions &options) {
        buildGraphPipeline(pm, options.toSection(), options.maxConstantElements,
                           options.decompose);
      });
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
  PassPipelineRegistration<CompilePipelineOptions>(
      "moir-compile",
      "A whole compile from the input phase to `phase` for `target`, as moirc runs it "
      "(every moirc option is an option here)",
      [](OpPassManager &pm, const CompilePipelineOptions &pipeline) {
        CompileOptions options = pipeline.toCompileOptions();
        std::optional<CompilePhase> last = parseCompilePhase(pipeline.phase);
        if (!last)
          return fail(pm, "moir-compile: unknown phase '" + pipeline.phase + "'");
        Expected<const TargetBackend *> backend = lookupTargetBackend(options.target);
        if (!backend)
          return fail(pm, "moir-compile: " + toString(backend.takeError()));
        if (Error err = validateOptions(options))
          return fail(pm, "moir-compile: " + toString(std::move(err)));
        if (Error err = (*backend)->configure(options))
          return fail(pm, "moir-compile: " + toString(std::move(err)));
        for (CompilePhase phase : (*backend)->phases()) {
          // The graph phase starts with the input phase's contract check.
          if (phase != CompilePhase::Input || *last == CompilePhase::Input)
            if (Error err = buildPhasePipeline(pm, **backend, phase, options))
              return fail(pm, "moir-compile: " + toString(std::move(err)));
          if (phase == *last)
            return;
        }
        fail(pm, "moir-compile: target '" + options.target + "' has no phase '" +
                     pipeline.phase + "'");
      });
  PassPipelineRegistration<KernelPipelineOptions>(
      "moir-gpu-kernels",
      "Linalg phase -> gpu.launch kernels in one gpu.module and async host code "
      "(bufferize, warp reductions, offload, map loops, outline)",
      [](OpPassManager &pm, const KernelPipelineOptions &options) {
        buildGPUKernelPipeline(pm, options.warpSize);
      });
  PassPipelineRegistration<DevicePipelineOptions>(
      "moir-gpu-device-lowering",
      "Lowers gpu.module kernels for a registered GPU target and optionally "
      "serializes them (assembly text or the loadable binary)",
      [](OpPassManager &pm, const DevicePipelineOptions &options) {
        const gpu::GPUTargetInfo *target = gpu::lookupTarget(options.target);
        if (!target)
          return fail(pm, "moir-gpu-device-lowering: unknown GPU target '" + options.target + "'");
        gpu::GPUOptions gpu;
        gpu.chip = options.chip.empty() ? target->chips().front().str() : std::string(options.chip);
        if (Error err = target->validate(gpu))
          return fail(pm, "moir-gpu-device-lowering: " + toString(std::move(err)));
        buildGPUDevicePipeline(pm, *target, gpu);
        if (options.serialize != "none")
          target->buildSerialization(pm, gpu, options.serialize == "assembly");
      });
}

} // namespace moir
