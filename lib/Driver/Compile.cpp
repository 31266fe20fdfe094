//===- Compile.cpp - phase by phase, to IR or to an artifact --------------===//

#include "moir/Driver/Compile.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/Artifact.h"
#include "moir/Target/TargetBackend.h"

#include "LLM/IR/LLMOps.h"
#include "MoE/IR/MoEOps.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/Timing.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <map>

using namespace mlir;
using namespace llvm;

namespace moir {

namespace {

std::string dtypeName(mlir::Type type) {
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

Error fail(const Twine &message) { return createStringError(inconvertibleErrorCode(), message); }

/// What a decode step reads of each weight, keyed by the names it holds:
/// the fraction read per token, whether rows are gathered by token id, and
/// for an expert stack its MoE layer (the k-th, as routing profiles count
/// them) and the layer's experts its leading dimension holds.
struct DecodeRead {
  double fraction = 1.0;
  bool gathered = false;
  int64_t moeLayer = -1;
  SmallVector<int64_t> experts;
};
using DecodeReads = llvm::StringMap<DecodeRead>;

/// From the graph phase: embeddings read one row per token, expert stacks
/// top-k of their experts.
DecodeReads decodeReads(ModuleOp module) {
  DecodeReads reads;
  auto key = [](mlir::Value v) -> std::string {
    if (auto ref = v.getDefiningOp<llm::WeightRefOpInterface>())
      return llvm::join(ref.getWeightNames(), ",");
    return "";
  };
  int64_t moeLayer = 0;
  module.walk([&](Operation *op) {
    if (auto embedding = dyn_cast<llm::EmbeddingOp>(op))
      reads[key(embedding.getTable())] = {1.0, true, -1, {}};
    // A decode step reads top-k (the ids' width) of each expert stack.
    // (A rank's share of the experts, moe.expert_rows, reads top-k of the
    // layer's experts' share of them: the same fraction of its stacks.)
    auto stacks = [&](mlir::Value ids, std::initializer_list<mlir::Value> weights,
                      int64_t layerExperts = 0, ArrayRef<int64_t> held = {}) {
      int64_t stacked = llm::getWeightShape(weights.begin()->getType())[0];
      double experts = static_cast<double>(layerExperts ? layerExperts : stacked);
      double fraction =
          static_cast<double>(cast<RankedTensorType>(ids.getType()).getDimSize(1)) / experts;
      DecodeRead read{fraction, false, moeLayer++, {}};
      if (held.empty())
        for (int64_t e = 0; e < stacked; ++e)
          read.experts.push_back(e);
      else
        read.experts.assign(held.begin(), held.end());
      for (mlir::Value w : weights)
        reads[key(w)] = read;
    };
    if (auto fused = dyn_cast<moe::FusedExpertsOp>(op))
      stacks(fused.getIds(), {fused.getGate(), fused.getUp(), fused.getDown()});
    if (auto rows = dyn_cast<moe::ExpertRowsOp>(op)) {
      // The rank's routed experts, ascending: its stacks' order.
      SmallVector<int64_t> held;
      for (auto [e, owner] : llvm::enumerate(rows.getOwners()))
        if (static_cast<int64_t>(e) < rows.getNumRoutedExperts() && owner == rows.getRank())
          held.push_back(static_cast<int64_t>(e));
      stacks(rows.getIds(), {rows.getGate(), rows.getUp(), rows.getDown()},
             rows.getNumRoutedExperts(), held);
    }
    if (auto ffn = dyn_cast<moe::ExpertFFNOp>(op))
      if (auto dispatch = ffn.getRows().getDefiningOp<moe::DispatchOp>())
        stacks(dispatch.getIds(), {ffn.getGate(), ffn.getUp(), ffn.getDown()});
  });
  return reads;
}

/// From the linalg phase: the entry's arguments for the manifest.
Expected<ArtifactInfo> describeEntry(ModuleOp module, const DecodeReads &reads) {
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
      if (StringAttr packing = entry.getPacking())
        arg.packing = packing.getValue().str();
      auto it = reads.find(llvm::join(arg.names, ","));
      if (it != reads.end()) {
        arg.decodeFraction = it->second.fraction;
        arg.gathered = it->second.gathered;
        arg.moeLayer = it->second.moeLayer;
        arg.experts.assign(it->second.experts.begin(), it->second.experts.end());
      }
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

/// --expert-placement's routing profiles (moir-run --record-routing's JSON),
/// their counts summed per layer, as moe-expert-parallel's loads.
Expected<std::string> readExpertLoads(StringRef files) {
  std::map<int64_t, std::vector<uint64_t>> loads;
  SmallVector<StringRef> paths;
  files.split(paths, ',', -1, /*KeepEmpty=*/false);
  for (StringRef path : paths) {
    auto buffer = llvm::MemoryBuffer::getFile(path);
    if (!buffer)
      return fail(Twine(path) + ": cannot read the routing profile: " + buffer.getError().message());
    Expected<llvm::json::Value> json = llvm::json::parse((*buffer)->getBuffer());
    if (!json)
      return fail(Twine(path) + ": not JSON: " + toString(json.takeError()));
    auto bad = [&](const Twine &why) {
      return fail(Twine(path) + ": not a routing profile of moir-run --record-routing: " + why);
    };
    const llvm::json::Object *top = json->getAsObject();
    if (!top || top->getString("format") != std::optional<StringRef>("moir-routing 1"))
      return bad("no \"format\": \"moir-routing 1\"");
    const llvm::json::Array *layers = top->getArray("layers");
    if (!layers)
      return bad("no \"layers\" array");
    for (const llvm::json::Value &entry : *layers) {
      const llvm::json::Object *layer = entry.getAsObject();
      std::optional<int64_t> index = layer ? layer->getInteger("moe_layer") : std::nullopt;
      const llvm::json::Array *counts = layer ? layer->getArray("counts") : nullptr;
      if (!index || *index < 0 || !counts || counts->empty())
        return bad("a layer without its moe_layer index or counts");
      std::vector<uint64_t> &sum = loads[*index];
      if (!sum.empty() && sum.size() != counts->size())
        return fail(Twine(path) + ": MoE layer " + Twine(*index) + " counts " +
                    Twine(counts->size()) + " experts, another profile " + Twine(sum.size()));
      sum.resize(counts->size(), 0);
      for (auto [e, c] : llvm::enumerate(*counts)) {
        std::optional<int64_t> v = c.getAsInteger();
        if (!v || *v < 0)
          return bad("MoE layer " + Twine(*index) + " has a count that is not a whole number");
        sum[e] += static_cast<uint64_t>(*v);
      }
    }
  }
  std::string text;
  for (const auto &[layer, counts] : loads) {
    text += (text.empty() ? "" : ";") + std::to_string(layer) + "=";
    for (auto [e, c] : llvm::enumerate(counts))
      text += (e ? "," : "") + std::to_string(c);
  }
  return text;
}

/// The backend for `options`, with the options validated and completed.
Expected<const TargetBackend *> configure(CompileOptions &options) {
  if (Error err = validateOptions(options))
    return std::move(err);
  if (!options.graph.expertPlacement.empty()) {
    Expected<std::string> loads = readExpertLoads(options.graph.expertPlacement);
    if (!loads)
      return loads.takeError();
    options.graph.expertLoads = std::move(*loads);
  }
  Expected<const TargetBackend *> backend = lookupTargetBackend(options.target);
  if (!backend)
    return backend.takeError();
  if (Error err = (*backend)->configure(options))
    return std::move(err);
  return *backend;
}

/// The prompt length the manifest's prefill costs are counted for.
constexpr int64_t kCostPrompt = 512;

/// The compiler's work model of a graph-phase module (the manifest's `cost`
/// lines): counted on a copy carrying the target's lowering configuration.
Error collectCosts(ModuleOp module, const TargetBackend &backend, const CompileOptions &options,
                   std::vector<CostComponent> &costs) {
  OwningOpRef<ModuleOp> copy(cast<ModuleOp>(module->clone()));
  PassManager pm(module.getContext());
  if (Error err = backend.buildLoweringConfig(pm, options))
    return err;
  if (failed(pm.run(*copy)))
    return fail("writing the target's lowering configuration failed");
  Expected<std::vector<CostComponent>> model = costModel(*copy, kCostPrompt);
  if (!model)
    return model.takeError();
  costs = std::move(*model);
  return Error::success();
}

/// Runs `backend`'s phases up to `last`, each as its own pass pipeline;
/// with `info`, collects the manifest's entry description and lets the
/// backend look at each phase.
Error runPhases(ModuleOp module, const TargetBackend &backend, const CompileOptions &options,
                CompilePhase last, ArtifactInfo *info) {
  if (!hasPhase(backend, last)) {
    SmallVector<std::string> names;
    for (CompilePhase phase : backend.phases())
      names.push_back(stringifyCompilePhase(phase).str());
    return fail("target '" + backend.name() + "' has no phase '" + stringifyCompilePhase(last) +
                "' (its phases: " + join(names, ", ") + ")");
  }
  DecodeReads reads;
  std::vector<CostComponent> costs;
  for (CompilePhase phase : backend.phases()) {
    // The graph phase starts with the input phase's contract check.
    if (phase == CompilePhase::Input && last != CompilePhase::Input)
      continue;
    PassManager pm(module.getContext());
    // -mlir-print-ir-after=... and friends, for looking at any phase.
    if (failed(applyPassManagerCLOptions(pm)))
      return fail("bad pass manager options");
    applyDefaultTimingPassManagerCLOptions(pm);
    if (Error err = buildPhasePipeline(pm, backend, phase, options))
      return err;
    if (failed(pm.run(module)))
      return fail("compiling to the '" + stringifyCompilePhase(phase) + "' phase failed");
    if (info) {
      if (phase == CompilePhase::Graph) {
        reads = decodeReads(module);
        if (Error err = collectCosts(module, backend, options, costs))
          return err;
      }
      if (phase == CompilePhase::Linalg) {
        Expected<ArtifactInfo> entry = describeEntry(module, reads);
        if (!entry)
          return entry.takeError();
        *info = std::move(*entry);
        info->costs = std::move(costs);
        info->costPrompt = kCostPrompt;
      }
      if (Error err = backend.afterPhase(module, phase, options, *info))
        return err;
    }
    if (phase == last)
      break;
  }
  return Error::success();
}

} // namespace

Error compileToPhase(ModuleOp module, CompileOptions options, CompilePhase last) {
  Expected<const TargetBackend *> backend = configure(options);
  if (!backend)
    return backend.takeError();
  return runPhases(module, **backend, options, last, nullptr);
}

namespace {

/// What every rank of one parallel compile shares: the input IR (the
/// checkpoint's graph and the import options) and the rank count.
uint64_t parallelGroup(ModuleOp module, const CompileOptions &options) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os, OpPrintingFlags().printGenericOpForm());
  // The placement decides which rank holds which expert.
  os << "\nranks " << options.graph.expertParallel << " tensor " << options.graph.tensorParallel
     << " loads " << options.graph.expertLoads;
  return fnv1a64(text);
}

Error compileOneArtifact(ModuleOp module, const frontend::WeightStore &store,
                         const CompileOptions &options, StringRef outputPath,
                         const TargetBackend &backend, uint64_t group) {
  ArtifactInfo info;
  if (Error err = runPhases(module, backend, options, backend.phases().back(), &info))
    return err;
  if (options.graph.parallelRanks() > 1) {
    info.ranks = options.graph.parallelRanks();
    info.rank = options.graph.parallelRank;
    info.group = group;
    info.parallelKind = options.graph.expertParallel > 1 && options.graph.tensorParallel > 1
                            ? "experts+tensor"
                            : options.graph.expertParallel > 1 ? "experts" : "tensor";
  }
  if (!options.graph.expertResidentBudget.empty()) {
    info.residentBudget = parseByteSize(options.graph.expertResidentBudget).value_or(0);
    info.expertLoads = options.graph.expertLoads;
  }
  Expected<std::string> code = backend.serialize(module, options, info);
  if (!code)
    return code.takeError();
  for (const auto &resource : options.resources)
    info.resources.push_back(resource);
  if (!options.dequantizedWeightsPath.empty())
    if (Error err = writeDequantizedWeights(options.dequantizedWeightsPath, info, store))
      return err;
  return writeArtifact(outputPath, info, *code, store, options.signingKeyPath);
}

} // namespace

Error compileArtifact(ModuleOp module, const frontend::WeightStore &store, CompileOptions options,
                      StringRef outputPath) {
  Expected<const TargetBackend *> backend = configure(options);
  if (!backend)
    return backend.takeError();
  int64_t ranks = options.graph.parallelRanks();
  uint64_t group = ranks > 1 ? parallelGroup(module, options) : 0;
  if (ranks == 1 || options.graph.parallelRank >= 0)
    return compileOneArtifact(module, store, options, outputPath, **backend, group);
  // Every rank's artifact, as DIR/rank<r>.moir: mpirun's processes all get
  // the same command line, and each opens its own file.
  if (std::error_code ec = llvm::sys::fs::create_directories(outputPath))
    return fail(Twine(outputPath) + ": cannot create the directory of a " + Twine(ranks) +
                "-rank artifact: " + ec.message());
  for (int64_t rank = 0; rank < ranks; ++rank) {
    OwningOpRef<ModuleOp> copy(cast<ModuleOp>(module->clone()));
    CompileOptions one = options;
    one.graph.parallelRank = rank;
    SmallString<256> path(outputPath);
    llvm::sys::path::append(path, "rank" + Twine(rank) + ".moir");
    if (Error err = compileOneArtifact(*copy, store, one, path, **backend, group))
      return err;
  }
  return Error::success();
}

Error reportWork(ModuleOp module, CompileOptions options, int64_t context, int64_t prompt,
                 raw_ostream &os) {
  Expected<const TargetBackend *> backend = configure(options);
  if (!backend)
    return backend.takeError();
  OwningOpRef<ModuleOp> copy(cast<ModuleOp>(module->clone()));
  if (Error err = runPhases(*copy, **backend, options, CompilePhase::Graph, nullptr))
    return err;
  PassManager configure(module.getContext());
  if (Error err = (*backend)->buildLoweringConfig(configure, options))
    return err;
  if (failed(configure.run(*copy)))
    return fail("writing the target's lowering configuration failed");
  return printReport(*copy, context, prompt, os);
}

} // namespace moir
