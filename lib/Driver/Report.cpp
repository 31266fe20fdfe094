//===- Report.cpp - moirc --report: work per token, per layer --------------===//
//
// Counts, from the graph phase, the multiply-adds of every contraction
// (projections, expert FFNs, attention) and the bytes of weights and caches
// they read, per decode token at a given context and per token of a prefill
// from an empty cache; once with the fusion choices the graph phase made and
// once without them (every fusion off), so the effect of each is visible.
//
//===----------------------------------------------------------------------===//

#include "moir/Conversion/Passes.h"
#include "moir/Driver/Compile.h"
#include "MoIR/IR/MoIRDialect.h"

#include "LLM/IR/LLMOps.h"
#include "MLA/IR/MLAOps.h"
#include "MoE/IR/MoEOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/MapVector.h"

#include <map>
#include "llvm/Support/Format.h"

using namespace mlir;

namespace moir {
namespace {

struct Work {
  double decodeFlops = 0, decodeBytes = 0, prefillFlops = 0, prefillBytes = 0;
  void add(const Work &o) {
    decodeFlops += o.decodeFlops;
    decodeBytes += o.decodeBytes;
    prefillFlops += o.prefillFlops;
    prefillBytes += o.prefillBytes;
  }
};

struct Row {
  Work before, after;
};

/// The op's decoder layer (moir.layer, set by the importer), or "rest".
std::string layerOf(Operation *op) {
  if (std::optional<int64_t> layer = moir::attrs::getLayer(op))
    return std::to_string(*layer);
  return "rest";
}

double numElements(Type type) {
  if (auto shaped = dyn_cast<ShapedType>(type))
    return shaped.hasStaticShape() ? static_cast<double>(shaped.getNumElements()) : 0.0;
  if (auto q = dyn_cast<llm::QTensorType>(type))
    return static_cast<double>(q.getNumElements());
  return 0.0;
}

/// Bytes per element as stored (a quantized tensor's storage, scales
/// included, spread over its elements).
double elementBytes(Type type) {
  if (auto q = dyn_cast<llm::QTensorType>(type))
    return static_cast<double>(q.getStorageBytes()) / std::max(1.0, numElements(type));
  Type elem = getElementTypeOrSelf(type);
  return elem.isIntOrFloat() ? elem.getIntOrFloatBitWidth() / 8.0 : 0.0;
}

/// Bytes one cache row (token) of `cache` holds: values as stored and, for
/// a quantized cache (read through llm.dequantize_cache), its f32 scales.
double cacheRowBytes(Value cache) {
  auto type = cast<ShapedType>(cache.getType());
  double values = 1;
  for (int64_t d : type.getShape().drop_front())
    values *= static_cast<double>(d);
  auto dq = cache.getDefiningOp<llm::DequantizeCacheOp>();
  if (!dq)
    return values * elementBytes(type);
  double scales = 1;
  for (int64_t d : cast<ShapedType>(dq.getScales().getType()).getShape().drop_front())
    scales *= static_cast<double>(d);
  return values * elementBytes(dq.getCache().getType()) + 4 * scales;
}

/// Keys per query whose scores a prefill of `T` tokens from an empty cache
/// computes: all T when the scores are materialized; with flash attention,
/// each block of queries (config.getQueryBlock(group) of them) stops at its last
/// position and, with a sliding window, starts at the key block its first
/// query's window reaches.
double keysPerQuery(moir::LoweringConfigAttr config, int64_t T, int64_t group,
                    std::optional<int64_t> window, bool flash) {
  if (!flash || T <= 0)
    return static_cast<double>(T);
  int64_t block = config.getQueryBlock(group), keyBlock = config.getKeyBlock();
  double total = 0;
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    int64_t n = std::min(block, T - t0), hi = t0 + n, lo = 0;
    if (window)
      lo = std::max<int64_t>(0, t0 - *window + 1) / keyBlock * keyBlock;
    total += static_cast<double>(n) * static_cast<double>(hi - lo);
  }
  return total / static_cast<double>(T);
}

} // namespace

namespace {

using Components =
    llvm::MapVector<std::string, CostComponent, std::map<std::string, unsigned>>;

/// Walks the contractions of @forward once: fills `components` (when given)
/// with the work of each op under its component's name and prints the report
/// to `os` (when given).
llvm::Error analyze(ModuleOp module, int64_t context, int64_t prompt, raw_ostream *out,
                    Components *components) {
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward)
    return llvm::createStringError("report: no @forward function");
  // Flash attention's blocks as the target's lowering will build them.
  moir::LoweringConfigAttr config = moir::attrs::getLoweringConfig(module);
  if (!config)
    return llvm::createStringError("report: no lowering configuration on the module");
  const double S = static_cast<double>(context), T = static_cast<double>(prompt);
  // A prefill from an empty cache: query t sees t + 1 rows, (T + 1) / 2 on
  // average.
  const double meanRows = (T + 1) / 2;
  llvm::MapVector<std::string, Row, std::map<std::string, unsigned>> rows;
  int64_t topK = 1, absorbed = 0, materializedPrefill = 0, mlaLayers = 0;
  // MoE layers, fused router / experts steps, shared experts folded, and the
  // f32 intermediates passed between MoE steps per decode token (bytes
  // written and read back), with the fusions and without.
  int64_t moeLayers = 0, fusedRoutes = 0, fusedExperts = 0, foldedShared = 0;
  // Attention layers, those reading quantized caches, and the cache bytes a
  // token adds over all layers.
  int64_t attentionLayers = 0, quantizedCaches = 0;
  double cacheBytesPerToken = 0;
  double betweenSteps = 0, betweenStepsUnfused = 0;
  // Attention ops (llm.attention, mla.attend) and those run flash-style,
  // and the bytes of the [tokens, heads, keys] f32 scores a prompt's
  // prefill materializes (either MLA form has one score per query, head and
  // key).
  int64_t flashOps = 0, flashable = 0;
  double scoreBytes = 0, scoreBytesFlash = 0;
  auto expertWork = [&](ArrayRef<Value> stacks) {
    double n = 0, bytes = 0, experts = 1;
    for (Value v : stacks) {
      n += numElements(v.getType());
      bytes += numElements(v.getType()) * elementBytes(v.getType());
      if (auto shaped = dyn_cast<ShapedType>(v.getType()))
        experts = static_cast<double>(shaped.getDimSize(0));
    }
    double k = std::min<double>(topK, experts);
    // A token runs k experts; a decode step reads k of the stacks, a
    // prefill of T tokens at most all of them once.
    return Work{2 * n / experts * k, bytes / experts * k, 2 * n / experts * k,
                bytes * std::min(1.0, T * k / experts) / T};
  };
  auto linearWork = [&](Value weight) {
    double n = numElements(weight.getType()), bytes = n * elementBytes(weight.getType());
    return Work{2 * n, bytes, 2 * n, bytes / T};
  };

  forward.walk([&](Operation *op) {
    Work w;
    Work before;
    bool differs = false;
    // The component the op's work is attributed to, the routed experts it
    // holds, and the work of shared experts folded into it.
    StringRef kind = "projections";
    int64_t experts = 0;
    Work shared;
    if (auto linear = dyn_cast<llm::LinearOp>(op)) {
      w = linearWork(linear.getWeight());
    } else if (auto route = dyn_cast<moe::RouteOp>(op)) {
      topK = route.getRouting().getTopK();
      double experts = cast<ShapedType>(route.getLogits().getType()).getDimSize(1);
      ++moeLayers;
      betweenSteps += 8 * experts; // the logits
      betweenStepsUnfused += 8 * experts;
      return;
    } else if (auto route = dyn_cast<moe::FusedRouteOp>(op)) {
      topK = route.getRouting().getTopK();
      ++moeLayers;
      ++fusedRoutes;
      betweenStepsUnfused += 8 * llm::getWeightShape(route.getRouter().getType())[0];
      w = linearWork(route.getRouter());
      kind = "router";
    } else if (auto ffn = dyn_cast<moe::ExpertFFNOp>(op)) {
      w = expertWork({ffn.getGate(), ffn.getUp(), ffn.getDown()});
      kind = "experts";
      experts = llm::getWeightShape(ffn.getGate().getType())[0];
      // rows, gate, up, hidden and output rows of every copy, the combined
      // result.
      double h = cast<ShapedType>(ffn.getRows().getType()).getDimSize(1),
             f = llm::getWeightShape(ffn.getGate().getType())[1];
      betweenSteps += 8 * (topK * (2 * h + 3 * f) + h);
      betweenStepsUnfused += 8 * (topK * (2 * h + 3 * f) + h);
    } else if (auto fused = dyn_cast<moe::FusedExpertsOp>(op)) {
      ++fusedExperts;
      w = expertWork({fused.getGate(), fused.getUp(), fused.getDown()});
      kind = "experts";
      experts = llm::getWeightShape(fused.getGate().getType())[0];
      double h = cast<ShapedType>(fused.getInput().getType()).getDimSize(1),
             f = llm::getWeightShape(fused.getGate().getType())[1];
      // Fused: the gathered rows and the hidden rows of the routed copies
      // (the shared experts' intermediates are left out on both sides).
      betweenSteps += 8 * topK * (h + f);
      betweenStepsUnfused += 8 * (topK * (2 * h + 3 * f) + h);
      if (fused.hasSharedExpert()) {
        ++foldedShared;
        for (Value v : {fused.getSharedGateProj(), fused.getSharedUpProj(),
                        fused.getSharedDownProj()})
          shared.add(linearWork(v));
      }
    } else if (auto attn = dyn_cast<llm::AttentionOp>(op)) {
      auto q = cast<ShapedType>(attn.getQuery().getType());
      auto k = cast<ShapedType>(attn.getKey().getType());
      auto v = cast<ShapedType>(attn.getValue().getType());
      double heads = q.getDimSize(1), dk = q.getDimSize(2), dv = v.getDimSize(2);
      double rowBytes = cacheRowBytes(attn.getKey()) + cacheRowBytes(attn.getValue());
      kind = "attention";
      ++attentionLayers;
      quantizedCaches += attn.getKey().getDefiningOp<llm::DequantizeCacheOp>() != nullptr;
      cacheBytesPerToken += rowBytes;
      std::optional<int64_t> window;
      if (std::optional<uint64_t> size = attn.getSlidingWindow())
        window = static_cast<int64_t>(*size);
      int64_t group = q.getDimSize(1) / k.getDimSize(1);
      bool flash = attn.getFlash();
      ++flashable;
      flashOps += flash;
      scoreBytes += 4 * heads * T * T;
      scoreBytesFlash += flash ? 0 : 4 * heads * T * T;
      // Prefill: every key's score computed (materialized), or the keys
      // flash attention's blocks visit.
      auto prefill = [&](bool flash) {
        return 2 * heads * keysPerQuery(config, prompt, group, window, flash) * (dk + dv);
      };
      w = {2 * heads * S * (dk + dv), S * rowBytes, prefill(flash), meanRows * rowBytes};
      before = w;
      before.prefillFlops = prefill(false);
      differs = true;
    } else if (auto attend = dyn_cast<mla::AttendOp>(op)) {
      mla::ConfigAttr c = attend.getConfig();
      double h = c.getNumHeads(), rank = c.getKvLoraRank(), nope = c.getQkNopeHeadDim(),
             rope = c.getQkRopeHeadDim(), vd = c.getVHeadDim();
      double expand = rank * (nope + vd);
      // Multiply-adds per head of one call with `t` queries over `s` rows
      // (mla-absorb-weights' cost model).
      auto materialized = [&](double t, double s) { return s * expand + t * s * (nope + rope + vd); };
      // A prefill from an empty cache, materialized: flash attention
      // computes the scores of the keys its blocks visit, not all T.
      auto prefillMaterialized = [&](bool flash) {
        return T * expand + T * keysPerQuery(config, prompt, 1, std::nullopt, flash) * (nope + rope + vd);
      };
      auto absorbedCost = [&](double t, double s) { return t * (expand + s * (2 * rank + rope)); };
      double cacheBytes = cacheRowBytes(attend.getLatentCache()) + cacheRowBytes(attend.getRopeCache());
      kind = "attention";
      ++attentionLayers;
      quantizedCaches += attend.getLatentCache().getDefiningOp<llm::DequantizeCacheOp>() != nullptr;
      cacheBytesPerToken += cacheBytes;
      double kvb = numElements(attend.getKvBProj().getType()) *
                   elementBytes(attend.getKvBProj().getType());
      ++mlaLayers;
      bool decodeAbsorbed = attend.getForm() == mla::Form::absorbed;
      bool perCall = decodeAbsorbed && attend.getPrefillForm() == mla::Form::materialized;
      absorbed += decodeAbsorbed;
      materializedPrefill += perCall;
      double prefillMat = materialized(T, T), prefillAbs = absorbedCost(T, T);
      // The lowering's choice for this prefill (its cost model counts every
      // key), then the work that form does.
      bool prefillIsMaterialized = perCall ? prefillMat < prefillAbs : !decodeAbsorbed;
      bool flash = attend.getFlash();
      // Absorbed, all heads share the latent cache: flash attention's
      // query blocks hold config.getQueryBlock(heads) queries.
      double prefillAbsorbed =
          T * (expand + keysPerQuery(config, prompt, static_cast<int64_t>(h), std::nullopt, flash) *
                            (2 * rank + rope));
      double prefillChosen =
          prefillIsMaterialized ? prefillMaterialized(flash) : prefillAbsorbed;
      ++flashable;
      flashOps += flash;
      scoreBytes += 4 * h * T * T;
      scoreBytesFlash += flash ? 0 : 4 * h * T * T;
      w = {2 * h * (decodeAbsorbed ? absorbedCost(1, S) : materialized(1, S)),
           S * cacheBytes + kvb, 2 * h * prefillChosen / T, meanRows * cacheBytes + kvb / T};
      before = {2 * h * materialized(1, S), S * cacheBytes + kvb, 2 * h * prefillMat / T,
                meanRows * cacheBytes + kvb / T};
      differs = true;
    } else {
      return;
    }
    Row &row = rows[layerOf(op)];
    if (components) {
      std::string layer = layerOf(op);
      std::string prefix = layer == "rest" ? "head." : "layer." + layer + ".";
      auto addTo = [&](const std::string &name, const Work &work) {
        CostComponent &c = (*components)[name];
        c.decodeFlops += work.decodeFlops;
        c.decodeBytes += work.decodeBytes;
        c.prefillFlops += work.prefillFlops;
        c.prefillBytes += work.prefillBytes;
        return &c;
      };
      CostComponent *c = addTo(prefix + kind.str(), w);
      c->experts = std::max(c->experts, experts);
      if (shared.decodeFlops || shared.decodeBytes)
        addTo(prefix + "projections", shared);
    }
    w.add(shared);
    row.after.add(w);
    row.before.add(differs ? before : w);
  });
  if (!out)
    return llvm::Error::success();
  raw_ostream &os = *out;

  os << "moirc report: work per token of the contractions (projections, expert FFNs, "
        "attention), 1 FLOP = 1 multiply or add\n";
  os << "  decode: one token at context " << context << "; prefill: " << prompt
     << " tokens from an empty cache, per token\n";
  os << "fusions:\n";
  if (mlaLayers)
    os << "  mla-absorb-weights: " << absorbed << " of " << mlaLayers
       << " MLA layers decode absorbed, " << materializedPrefill
       << " prefill materialized where cheaper\n";
  else
    os << "  mla-absorb-weights: no MLA layers\n";
  if (moeLayers) {
    os << "  moe-fuse-router: " << fusedRoutes << " of " << moeLayers
       << " MoE layers route in one step with their router product\n";
    os << "  moe-fuse-experts: " << fusedExperts << " of " << moeLayers
       << " MoE layers run dispatch, experts and combine fused (" << foldedShared
       << " with the shared experts folded in)\n";
    os << llvm::format("  MoE intermediates per decode token (f32, written and read): "
                       "%.1f KB -> %.1f KB\n",
                       betweenStepsUnfused / 1e3, betweenSteps / 1e3);
  } else {
    os << "  moe-fuse-router, moe-fuse-experts: no MoE layers\n";
  }
  os << "  flash-attention: " << flashOps << " of " << flashable
     << " attention ops run by online softmax over key blocks; "
     << llvm::format("score matrices [tokens, heads, keys] of a %lld-token prefill (f32): "
                     "%.1f MB -> %.1f MB\n",
                     static_cast<long long>(prompt), scoreBytes / 1e6, scoreBytesFlash / 1e6);
  os << "  quantize-kv-cache: " << quantizedCaches << " of " << attentionLayers
     << " attention layers read quantized caches; "
     << llvm::format("%.0f", cacheBytesPerToken) << " cache bytes per token\n";
  os << llvm::format("%-6s %28s %12s %28s %12s\n", "layer", "decode MFLOP before -> after",
                     "decode MB", "prefill MFLOP before -> after", "prefill MB");
  Row total;
  auto line = [&](StringRef name, const Row &r) {
    os << llvm::format("%-6s %13.2f -> %11.2f %12.3f %13.2f -> %11.2f %12.3f\n",
                       name.str().c_str(), r.before.decodeFlops / 1e6, r.after.decodeFlops / 1e6,
                       r.after.decodeBytes / 1e6, r.before.prefillFlops / 1e6,
                       r.after.prefillFlops / 1e6, r.after.prefillBytes / 1e6);
  };
  for (auto &[name, r] : rows) {
    line(name, r);
    total.before.add(r.before);
    total.after.add(r.after);
  }
  line("total", total);
  return llvm::Error::success();
}

} // namespace

llvm::Error printReport(ModuleOp module, int64_t context, int64_t prompt, raw_ostream &os) {
  return analyze(module, context, prompt, &os, nullptr);
}

llvm::Expected<std::vector<CostComponent>> costModel(ModuleOp module, int64_t prompt) {
  // Everything is linear in the decode context: the work at contexts 0 and
  // 1 gives the intercept and the slope.
  Components at0, at1;
  if (llvm::Error err = analyze(module, 0, prompt, nullptr, &at0))
    return std::move(err);
  if (llvm::Error err = analyze(module, 1, prompt, nullptr, &at1))
    return std::move(err);
  std::vector<CostComponent> result;
  for (auto &[name, c] : at0) {
    CostComponent r = c;
    r.name = name;
    const CostComponent &one = at1[name];
    r.decodeFlopsPerRow = one.decodeFlops - c.decodeFlops;
    r.decodeBytesPerRow = one.decodeBytes - c.decodeBytes;
    result.push_back(r);
  }
  return result;
}

} // namespace moir
