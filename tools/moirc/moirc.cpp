//===- moirc.cpp - MoIR's compile driver -----------------------------------===//
//
// moirc MODEL --compile-to=<phase> -o OUT
//
// MODEL is a Hugging Face checkpoint folder (config.json + safetensors), a
// GGUF file, or a .mlir module already in the input contract. Runs the
// compile phases in order and stops after the one asked for, writing its IR.
//
//===----------------------------------------------------------------------===//

#include "moir/Driver/Compile.h"
#include "moir/Frontend/Importer.h"
#include "moir/InitAll.h"
#include "moir/Pipelines/Pipelines.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
namespace cl = llvm::cl;

static cl::opt<std::string>
    inputFile(cl::Positional,
              cl::desc("<checkpoint folder | model.gguf | module.mlir>"),
              cl::Required);
static cl::opt<int64_t> cacheCapacity("cache-capacity",
                                      cl::desc("KV-cache rows of the compiled model"),
                                      cl::init(4096));
static cl::opt<std::string> outputFile("o", cl::desc("output file"),
                                       cl::value_desc("file"), cl::init("-"));
static cl::opt<std::string>
    target("target", cl::desc("compile to an artifact for this target (cpu, nvidia, amd)"),
           cl::init(""));
static cl::opt<std::string> gpuChip("gpu",
                                    cl::desc("GPU chip: sm_80, sm_90, sm_90a, ... (nvidia); "
                                             "gfx942, gfx90a, gfx1100 (amd)"),
                                    cl::init(""));
static cl::opt<std::string> gpuToolkit("gpu-toolkit",
                                       cl::desc("CUDA toolkit or ROCm root (default: $CUDA_HOME "
                                                "or /usr/local/cuda; $ROCM_PATH, /opt/rocm or "
                                                "one made from rocm-device-libs)"),
                                       cl::init(""));
static cl::opt<unsigned> codeObject("amdgpu-code-object",
                                   cl::desc("AMD code object version: 4, 5 (default) or 6"),
                                   cl::init(5));
static cl::opt<std::string>
    deviceCode("dump-device-code",
               cl::desc("also write the GPU binary (fatbin, HSACO) to this file and its "
                        "assembly (PTX, AMDGCN) to FILE.s, for checks"),
               cl::init(""));
static cl::opt<std::string> cpuName("cpu",
                                    cl::desc("CPU to generate code for (native, znver4, "
                                             "x86-64-v3, neoverse-v1, ...)"),
                                    cl::init("native"));
static cl::opt<std::string>
    weightType("weight-type",
               cl::desc("element type of weight matrices in the artifact: bf16, f16 or "
                        "f32 (default: as stored; conversions are reported)"),
               cl::init(""));
static cl::opt<bool> report(
    "report",
    cl::desc("print, per layer and in total, the FLOPs and bytes per decode token and per "
             "prefill token with and without the graph phase's fusions, and the fusions "
             "applied (alone: only the report)"),
    cl::init(false));
static cl::opt<int64_t> reportContext("report-context",
                                      cl::desc("context of the decode token in --report"),
                                      cl::init(4096));
static cl::opt<int64_t> reportPrompt("report-prompt",
                                     cl::desc("prefill length in --report"), cl::init(512));
static cl::opt<bool> absorbMLA(
    "mla-absorb-weights",
    cl::desc("latent attention (DeepSeek MLA): fold W_UK/W_UV into the query and output "
             "for decode and run prefill materialized where a cost model finds it cheaper "
             "(mla-absorb-weights; default); =false: materialized everywhere"),
    cl::init(true));
static cl::opt<bool> fuseExperts(
    "moe-fuse-experts",
    cl::desc("MoE layers: dispatch, the expert FFNs (gate/up with SiLU-and-multiply, down "
             "with the routing weight), combine and the shared expert as one fused op, run "
             "as two parallel phases over the selected experts (moe-fuse-experts; default, "
             "CPU targets); =false keeps the separate steps"),
    cl::init(true));
static cl::opt<bool> fuseRouter(
    "moe-fuse-router",
    cl::desc("MoE layers: the router matmul, scoring, correction bias, group-limited top-k, "
             "normalization and scaling as one fused op, run in parallel over blocks of "
             "tokens (moe-fuse-router; default, CPU targets); =false keeps them separate"),
    cl::init(true));
static cl::opt<bool> flashAttention(
    "flash-attention",
    cl::desc("attention (and MLA's materialized prefill) by online softmax over blocks of 64 "
             "keys, one parallel work item per (block of queries, KV head); blocks a query "
             "cannot see are skipped and the scores are never materialized (flash-attention; "
             "default, CPU targets); =false materializes the scores and softmaxes them"),
    cl::init(true));
static cl::opt<std::string> quantizeKVCache(
    "quantize-kv-cache",
    cl::desc("store the KV (or MLA latent) caches as int8 or fp8 (E4M3) with one f32 scale per "
             "row (token, and KV head), dequantized inside the attention products "
             "(quantize-kv-cache; CPU targets); none (default): f32 caches"),
    cl::init("none"));
static cl::opt<bool> cpuKernels(
    "cpu-contraction-kernels",
    cl::desc("CPU target: register-blocked vector kernels for the matmuls (default); "
             "=false keeps plain loops, the reference the kernels are tested against"),
    cl::init(true));
static cl::opt<bool> cpuBF16Dot(
    "cpu-bf16-dot",
    cl::desc("CPU target: multiply bf16 weights with AVX512-BF16 dot products where the "
             "CPU has them (default); activations are rounded to bf16, as bf16 inference "
             "does (about 1% of the largest logit; the MoE router stays f32). =false keeps "
             "f32 arithmetic"),
    cl::init(true));
static cl::opt<std::string> triple("triple",
                                   cl::desc("target triple (default: the host's)"),
                                   cl::init(""));
static cl::opt<std::string>
    compileTo("compile-to",
              cl::desc("stop after this phase and write its IR (input, graph, linalg, llvm)"),
              cl::init("graph"));

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  moir::registerAllPasses(); // for -mlir-print-ir-after=<pass>
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  cl::ParseCommandLineOptions(argc, argv, "MoIR compile driver\n");

  std::optional<moir::CompilePhase> phase = moir::parseCompilePhase(compileTo);
  if (!phase) {
    llvm::errs() << "moirc: unknown phase '" << compileTo
                 << "' for --compile-to (known: input, graph, linalg, llvm)\n";
    return 1;
  }

  DialectRegistry registry;
  moir::registerAllDialects(registry);
  moir::registerAllTargets();
  MLIRContext context(registry);

  std::string error;
  moir::frontend::WeightStore store;
  OwningOpRef<ModuleOp> module;
  auto sourceMgr = std::make_shared<llvm::SourceMgr>();
  SourceMgrDiagnosticHandler diagnostics(*sourceMgr, &context);
  if (!llvm::StringRef(inputFile).ends_with(".mlir")) {
    moir::frontend::ImportOptions options;
    options.cacheCapacity = cacheCapacity;
    options.weightType = weightType;
    auto imported = moir::frontend::importModel(context, inputFile, store, options);
    if (!imported) {
      llvm::errs() << "moirc: error: " << llvm::toString(imported.takeError()) << "\n";
      return 1;
    }
    module = std::move(*imported);
  } else {
    std::unique_ptr<llvm::MemoryBuffer> input = openInputFile(inputFile, &error);
    if (!input) {
      llvm::errs() << "moirc: " << error << "\n";
      return 1;
    }
    sourceMgr->AddNewSourceBuffer(std::move(input), llvm::SMLoc());
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
    if (!module)
      return 1;
  }

  moir::GraphChoices choices;
  choices.absorbMLA = absorbMLA;
  choices.fuseExperts = fuseExperts;
  choices.fuseRouter = fuseRouter;
  choices.flashAttention = flashAttention;
  if (quantizeKVCache != "none" && quantizeKVCache != "int8" && quantizeKVCache != "fp8") {
    llvm::errs() << "moirc: unknown --quantize-kv-cache '" << quantizeKVCache
                 << "' (known: none, int8, fp8)\n";
    return 1;
  }
  choices.quantizeKVCache = quantizeKVCache == "none" ? "" : quantizeKVCache.getValue();
  if (report) {
    if (reportContext < 1 || reportPrompt < 1) {
      llvm::errs() << "moirc: --report-context and --report-prompt must be positive\n";
      return 1;
    }
    OwningOpRef<ModuleOp> graphModule(cast<ModuleOp>((*module)->clone()));
    PassManager toGraph(&context);
    moir::GraphPipelineOptions graph;
    moir::setGraphOptions(choices, graph);
    moir::buildGraphPipeline(toGraph, graph);
    if (failed(toGraph.run(*graphModule))) {
      llvm::errs() << "moirc: " << inputFile << ": compiling to the graph phase failed\n";
      return 1;
    }
    if (llvm::Error err = moir::printReport(*graphModule, reportContext, reportPrompt, llvm::outs())) {
      llvm::errs() << "moirc: error: " << inputFile << ": " << llvm::toString(std::move(err)) << "\n";
      return 1;
    }
    if (target.empty() && outputFile == "-")
      return 0;
  }
  if (!target.empty()) {
    if (outputFile == "-") {
      llvm::errs() << "moirc: --target needs -o <artifact.moir>\n";
      return 1;
    }
    if (target != "cpu") {
      if (!moir::gpu::lookupTarget(target)) {
        llvm::errs() << "moirc: unknown target '" << target << "' (known: cpu";
        for (llvm::StringRef name : moir::gpu::registeredTargets())
          llvm::errs() << ", " << name;
        llvm::errs() << ")\n";
        return 1;
      }
      moir::gpu::GPUOptions options;
      options.chip = gpuChip;
      options.toolkit = gpuToolkit;
      options.codeObject = codeObject * 100;
      if (llvm::Error err = moir::compileGPUArtifact(*module, store, target, options, outputFile,
                                                     deviceCode, choices)) {
        llvm::errs() << "moirc: error: " << inputFile << ": " << llvm::toString(std::move(err))
                     << "\n";
        return 1;
      }
      return 0;
    }
    moir::cpu::TargetOptions options;
    options.cpu = cpuName;
    options.triple = triple;
    options.contractionKernels = cpuKernels;
    options.bf16Dot = cpuBF16Dot;
    if (llvm::Error err = moir::compileCPUArtifact(*module, store, options, outputFile, choices)) {
      llvm::errs() << "moirc: error: " << inputFile << ": " << llvm::toString(std::move(err)) << "\n";
      return 1;
    }
    return 0;
  }

  PassManager pm(&context);
  if (failed(applyPassManagerCLOptions(pm)))
    return 1;
  moir::GraphPipelineOptions graph;
  moir::setGraphOptions(choices, graph);
  moir::buildPipelineToPhase(pm, *phase, graph);
  if (failed(pm.run(*module))) {
    llvm::errs() << "moirc: " << inputFile << ": compiling to the '" << compileTo
                 << "' phase failed\n";
    return 1;
  }

  std::unique_ptr<llvm::ToolOutputFile> output = openOutputFile(outputFile, &error);
  if (!output) {
    llvm::errs() << "moirc: " << error << "\n";
    return 1;
  }
  module->print(output->os());
  output->keep();
  return 0;
}
