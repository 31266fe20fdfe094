//===- Compile.cpp - an imported model to a CPU artifact -------------------===//

#include "moir/Driver/Compile.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/Artifact.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/GPU/GPUTarget.h"

#include "LLM/IR/LLMOps.h"
#include "MoE/IR/MoEOps.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace llvm;

namespace moir {
using cpu::TargetOptions;

static std::string dtypeName(mlir::Type type) {
  if (type.isF32()) return "f32";
  if (type.isF16()) return "f16";
  if (type.isBF16()) return "bf16";
  if (type.isInteger(8)) return "i8";
  if (isa<mlir::Float8E4M3FNType>(type)) return "f8e4m3";
  if (type.isInteger(32)) return "i32";
  if (type.isInteger(64)) return "i64";
  if (type.isIndex()) return "index";
  return "?";
}

static Error fail(const Twine &message) {
  return createStringError(inconvertibleErrorCode(), message);
}

void setGraphOptions(const GraphChoices &choices, GraphPipelineOptions &options) {
  options.absorbMLA = choices.absorbMLA;
  options.fuseExperts = choices.fuseExperts;
  options.fuseRouter = choices.fuseRouter;
  options.flashAttention = choices.flashAttention;
  options.quantizeKVCache = choices.quantizeKVCache;
}

/// Graph phase, linalg phase and the entry's description, shared by every
/// target.
static Expected<ArtifactInfo> lowerToLinalg(ModuleOp module, const GraphChoices &choices) {
  MLIRContext *context = module.getContext();
  PassManager toGraph(context);
  GraphPipelineOptions graph;
  setGraphOptions(choices, graph);
  buildGraphPipeline(toGraph, graph);
  if (failed(toGraph.run(module)))
    return fail("compiling to the graph phase failed");
  // What a decode step reads of each weight, keyed by the names it holds.
  llvm::StringMap<std::pair<double, bool>> reads;
  auto key = [](mlir::Value v) -> std::string {
    if (auto ref = v.getDefiningOp<llm::WeightRefOpInterface>())
      return llvm::join(ref.getWeightNames(), ",");
    return "";
  };
  module.walk([&](Operation *op) {
    if (auto embedding = dyn_cast<llm::EmbeddingOp>(op))
      reads[key(embedding.getTable())] = {1.0, true};
    // A decode step reads top-k (the ids' width) of each expert stack.
    auto stacks = [&](mlir::Value ids, std::initializer_list<mlir::Value> weights) {
      double experts = static_cast<double>(llm::getWeightShape(weights.begin()->getType())[0]);
      double fraction =
          static_cast<double>(cast<RankedTensorType>(ids.getType()).getDimSize(1)) / experts;
      for (mlir::Value w : weights)
        reads[key(w)] = {fraction, false};
    };
    if (auto fused = dyn_cast<moe::FusedExpertsOp>(op))
      stacks(fused.getIds(), {fused.getGate(), fused.getUp(), fused.getDown()});
    if (auto ffn = dyn_cast<moe::ExpertFFNOp>(op))
      if (auto dispatch = ffn.getRows().getDefiningOp<moe::DispatchOp>())
        stacks(dispatch.getIds(), {ffn.getGate(), ffn.getUp(), ffn.getDown()});
  });
  PassManager toLinalg(context);
  cpu::buildLoweringToLinalgPipeline(toLinalg);
  if (failed(toLinalg.run(module)))
    return fail("lowering to linalg failed");

  // The entry's arguments, in call order, as their moir.arg attributes
  // describe them; then the logits the caller receives.
  auto func = module.lookupSymbol<func::FuncOp>("forward");
  if (!func || func.getNumResults() < 1)
    return fail("the lowered module has no @forward");
  ArtifactInfo info;
  unsigned caches = 0;
  for (auto [i, type] : llvm::enumerate(func.getArgumentTypes())) {
    EntryArgAttr entry = attrs::getEntryArg(func, i);
    if (!entry)
      return fail("argument " + Twine(i) + " of @forward has no moir.arg (what it holds)");
    ArtifactArg arg;
    if (auto shaped = dyn_cast<RankedTensorType>(type)) {
      arg.dtype = dtypeName(shaped.getElementType());
      for (int64_t d : shaped.getShape())
        arg.shape.push_back(ShapedType::isDynamic(d) ? -1 : d);
    } else {
      arg.dtype = dtypeName(type);
    }
    // The runtime allocates a quantized cache's scales as a cache of its own.
    ArgKind kind = entry.getKind();
    arg.kind = kind == ArgKind::cache_scales ? "cache" : stringifyArgKind(kind).str();
    caches += kind == ArgKind::cache;
    if (kind == ArgKind::cache && !info.capacity)
      info.capacity = cast<RankedTensorType>(type).getDimSize(0);
    if (kind == ArgKind::weight) {
      for (mlir::Attribute name : entry.getNames())
        arg.names.push_back(cast<StringAttr>(name).getValue().str());
      auto it = reads.find(llvm::join(arg.names, ","));
      if (it != reads.end())
        std::tie(arg.decodeFraction, arg.gathered) = it->second;
    }
    info.args.push_back(std::move(arg));
  }
  auto logits = cast<RankedTensorType>(func.getResultTypes()[0]);
  info.args.push_back({"logits", "f32", {-1, logits.getDimSize(1)}, {}});
  info.vocab = logits.getDimSize(1);
  // Two caches per layer (keys and values, or MLA's latent and RoPE key).
  info.layers = caches / 2;
  if (auto family = module->getAttrOfType<StringAttr>(attrs::familyName()))
    info.family = family.getValue().str();

  return info;
}

Error compileCPUArtifact(ModuleOp module, const frontend::WeightStore &store,
                         const TargetOptions &options, StringRef outputPath,
                         const GraphChoices &graph) {
  MLIRContext *context = module.getContext();
  Expected<ArtifactInfo> info = lowerToLinalg(module, graph);
  if (!info)
    return info.takeError();
  info->target = "cpu " + cpu::resolveTriple(options) + " " + cpu::resolveCPU(options);

  Expected<cpu::KernelOptions> kernels = cpu::kernelOptionsFor(options);
  if (!kernels)
    return kernels.takeError();
  PassManager toLLVM(context);
  cpu::buildLoweringToLLVMPipeline(toLLVM, *kernels);
  if (failed(toLLVM.run(module)))
    return fail("lowering to LLVM failed");
  Expected<std::string> code = cpu::emitSharedObject(module, options);
  if (!code)
    return code.takeError();
  return writeArtifact(outputPath, *info, *code, store);
}


Error compileGPUArtifact(ModuleOp module, const frontend::WeightStore &store,
                         StringRef targetName, const gpu::GPUOptions &options,
                         StringRef outputPath, StringRef deviceCodePath,
                         const GraphChoices &graph) {
  const gpu::GPUTargetInfo *target = gpu::lookupTarget(targetName);
  if (!target)
    return fail("unknown GPU target '" + targetName + "'");
  gpu::GPUOptions resolved = options;
  if (resolved.chip.empty())
    resolved.chip = target->chips().front().str();
  if (Error err = target->validate(resolved))
    return err;
  MLIRContext *context = module.getContext();
  // The fused MoE and flash-attention lowerings (scf.forall work items over
  // tokens, selected experts, query blocks) are written for the CPU's thread
  // pool; GPU kernels map the steps.
  if (!graph.quantizeKVCache.empty())
    return fail("--quantize-kv-cache is implemented for CPU targets only (the GPU attention "
                "kernels read f32 caches)");
  GraphChoices choices = graph;
  choices.fuseExperts = false;
  choices.fuseRouter = false;
  choices.flashAttention = false;
  Expected<ArtifactInfo> info = lowerToLinalg(module, choices);
  if (!info)
    return info.takeError();
  info->target = target->describe(resolved);

  PassManager toKernels(context);
  // -mlir-print-ir-after=... and friends, for looking at the kernels.
  (void)applyPassManagerCLOptions(toKernels);
  gpu::buildKernelPipeline(toKernels, target->warpSize(resolved.chip));
  if (failed(toKernels.run(module)))
    return fail("mapping the model onto GPU kernels failed");
  info->kernels = gpu::kernelNames(module);
  PassManager toDevice(context);
  target->buildDeviceLowering(toDevice, resolved);
  if (failed(toDevice.run(module)))
    return fail("lowering the kernels for " + resolved.chip + " failed");
  auto dump = [&](ModuleOp from, StringRef path) -> Error {
    std::error_code ec;
    raw_fd_ostream os(path, ec);
    if (ec)
      return fail(path + ": " + ec.message());
    for (const auto &[name, bytes] : gpu::deviceBinaries(from))
      os << bytes;
    return Error::success();
  };
  if (!deviceCodePath.empty()) {
    // The assembly text of the same kernels, for the vendor's assembler.
    OwningOpRef<ModuleOp> copy = module.clone();
    PassManager toAssembly(context);
    target->buildSerialization(toAssembly, resolved, /*assembly=*/true);
    if (failed(toAssembly.run(*copy)))
      return fail("emitting the kernels' assembly failed");
    if (Error err = dump(*copy, (deviceCodePath + ".s").str()))
      return err;
  }
  PassManager toBinary(context);
  target->buildSerialization(toBinary, resolved, /*assembly=*/false);
  if (failed(toBinary.run(module)))
    return fail("serializing the kernels for " + resolved.chip + " failed");
  if (!deviceCodePath.empty())
    if (Error err = dump(module, deviceCodePath))
      return err;
  PassManager toLLVM(context);
  gpu::buildHostLoweringPipeline(toLLVM);
  if (failed(toLLVM.run(module)))
    return fail("lowering the host code to LLVM failed");
  // The host code runs on whatever x86-64 machine holds the GPU.
  TargetOptions host;
  host.cpu = "x86-64-v2";
  host.triple = "x86_64-unknown-linux-gnu";
  Expected<std::string> code = cpu::emitSharedObject(module, host);
  if (!code)
    return code.takeError();
  return writeArtifact(outputPath, *info, *code, store);
}

} // namespace moir
