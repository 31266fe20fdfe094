//===- MoEExpertParallel.cpp - one rank's share of the routed experts ------===//
//
// Expert parallelism with replicated attention: every rank holds every token,
// computes the rows of the experts it owns, and one all-reduce gives every
// rank all rows. Rows are exchanged (not partial sums) so that the combine
// can add each token's rows in the order the 1-rank op does: the numbers do
// not depend on the rank count.
//
//===----------------------------------------------------------------------===//

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "MoE/IR/MoEOps.h"
#include "moir/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/Sequence.h"

#include <cstdio>
#include <map>

namespace moir {
#define GEN_PASS_DEF_MOEEXPERTPARALLELPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

/// `type` with its leading (expert) dimension set to `experts`.
Type withExperts(Type type, int64_t experts) {
  if (auto tensor = dyn_cast<RankedTensorType>(type)) {
    SmallVector<int64_t> shape(tensor.getShape());
    shape[0] = experts;
    return tensor.clone(shape);
  }
  auto q = cast<llm::QTensorType>(type);
  SmallVector<int64_t> shape(q.getShape());
  shape[0] = experts;
  return llm::QTensorType::get(type.getContext(), shape, q.getStorageType(), q.getScheme());
}

std::string layerLabel(Operation *op) {
  if (std::optional<int64_t> layer = attrs::getLayer(op))
    return "layer " + std::to_string(*layer);
  return "an MoE layer";
}

/// The stacked weight `w` cut down to the experts `local` (ascending), or
/// an error naming it when it cannot be cut.
FailureOr<Value> localExperts(OpBuilder &b, Operation *user, Value w, ArrayRef<int64_t> local,
                              StringRef what) {
  // Experts stored as one tensor (GGUF's ffn_*_exps): the weight store's
  // views of each expert ("<name>[expert=<k>]").
  if (auto one = w.getDefiningOp<llm::WeightOp>(); one && !one.getScaleName()) {
    SmallVector<Attribute> names;
    for (int64_t e : local)
      names.push_back(b.getStringAttr(one.getName() + "[expert=" + std::to_string(e) + "]"));
    auto sliced = llm::StackedWeightOp::create(b, one.getLoc(), withExperts(w.getType(), local.size()),
                                               b.getArrayAttr(names), ArrayAttr());
    if (std::optional<int64_t> layer = attrs::getLayer(one))
      attrs::setLayer(sliced, *layer);
    return sliced.getResult();
  }
  auto stacked = w.getDefiningOp<llm::StackedWeightOp>();
  if (!stacked) {
    // (A stacked tensor with a separate scale tensor would need its scales
    // cut the same way.)
    user->emitError() << "moe-expert-parallel: " << layerLabel(user) << "'s expert " << what
                      << " weight is neither one tensor per expert nor one stacked tensor "
                         "without separate scales: not split yet";
    return failure();
  }
  SmallVector<Attribute> names, scales;
  for (int64_t e : local) {
    names.push_back(stacked.getNames()[e]);
    if (stacked.getScaleNames())
      scales.push_back(stacked.getScaleNamesAttr()[e]);
  }
  auto sliced = llm::StackedWeightOp::create(
      b, stacked.getLoc(), withExperts(w.getType(), local.size()), b.getArrayAttr(names),
      stacked.getScaleNames() ? b.getArrayAttr(scales) : ArrayAttr());
  if (std::optional<int64_t> layer = attrs::getLayer(stacked))
    attrs::setLayer(sliced, *layer);
  return sliced.getResult();
}

/// "<layer>=<count>,...;..." -> layer -> counts; false on a malformed one.
bool parseLoads(StringRef text, std::map<int64_t, SmallVector<uint64_t>> &loads) {
  SmallVector<StringRef> layers;
  text.split(layers, ';', -1, /*KeepEmpty=*/false);
  for (StringRef entry : layers) {
    auto [layerText, countsText] = entry.split('=');
    int64_t layer = 0;
    if (layerText.trim().getAsInteger(10, layer) || layer < 0 || loads.count(layer))
      return false;
    SmallVector<StringRef> counts;
    countsText.split(counts, ',');
    for (StringRef c : counts) {
      uint64_t v = 0;
      if (c.trim().getAsInteger(10, v))
        return false;
      loads[layer].push_back(v);
    }
  }
  return true;
}

/// Each expert's rank: the experts by decreasing load (then id), each to the
/// least-loaded rank (then lowest) with room left; rank r has room for
/// E / ranks experts, one more for r < E % ranks, so memory stays balanced.
SmallVector<int32_t> balance(ArrayRef<uint64_t> loads, int64_t ranks) {
  int64_t experts = loads.size();
  auto order = llvm::to_vector(llvm::seq<int64_t>(0, experts));
  llvm::stable_sort(order, [&](int64_t a, int64_t b) { return loads[a] > loads[b]; });
  SmallVector<int64_t> room(ranks), total(ranks, 0);
  for (int64_t r = 0; r < ranks; ++r)
    room[r] = experts / ranks + (r < experts % ranks ? 1 : 0);
  SmallVector<int32_t> owners(experts, 0);
  for (int64_t e : order) {
    int64_t best = -1;
    for (int64_t r = 0; r < ranks; ++r)
      if (room[r] > 0 && (best < 0 || total[r] < total[best]))
        best = r;
    owners[e] = static_cast<int32_t>(best);
    --room[best];
    total[best] += static_cast<int64_t>(loads[e]);
  }
  return owners;
}

/// "a/b/c (max/mean x)": the ranks' summed loads under `owners`.
std::string describeLoads(ArrayRef<uint64_t> loads, ArrayRef<int32_t> owners, int64_t ranks) {
  SmallVector<uint64_t> total(ranks, 0);
  for (auto [e, owner] : llvm::enumerate(owners.take_front(loads.size())))
    total[owner] += loads[e];
  uint64_t sum = 0, most = 0;
  std::string text;
  for (auto [r, t] : llvm::enumerate(total)) {
    text += (r ? "/" : "") + std::to_string(t);
    sum += t;
    most = std::max(most, t);
  }
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.2f",
                sum ? static_cast<double>(most) * ranks / static_cast<double>(sum) : 1.0);
  return text + " (max/mean " + ratio + ")";
}

struct MoEExpertParallelPass
    : moir::impl::MoEExpertParallelPassBase<MoEExpertParallelPass> {
  using MoEExpertParallelPassBase::MoEExpertParallelPassBase;

  std::map<int64_t, SmallVector<uint64_t>> layerLoads;

  void runOnOperation() override {
    if (ranks < 1 || rank < 0 || rank >= ranks) {
      getOperation()->emitError() << "moe-expert-parallel: rank " << rank.getValue() << " of "
                                  << ranks.getValue()
                                  << " ranks is out of range";
      return signalPassFailure();
    }
    if (ranks == 1)
      return;
    if (!parseLoads(loads, layerLoads)) {
      getOperation()->emitError() << "moe-expert-parallel: malformed loads '" << loads.getValue()
                                  << "' (expected '<layer>=<count>,...;...')";
      return signalPassFailure();
    }
    SmallVector<moe::FusedExpertsOp> ops;
    getOperation()->walk([&](moe::FusedExpertsOp op) { ops.push_back(op); });
    bool unfused = false;
    getOperation()->walk([&](Operation *op) {
      if (isa<moe::ExpertFFNOp, moe::LayerOp>(op)) {
        op->emitError() << "moe-expert-parallel: " << layerLabel(op)
                        << "'s experts are not fused (expert parallelism splits "
                           "moe.fused_experts: keep --moe-fuse-experts on)";
        unfused = true;
      }
    });
    if (unfused)
      return signalPassFailure();
    if (!layerLoads.empty() && layerLoads.rbegin()->first >= static_cast<int64_t>(ops.size())) {
      getOperation()->emitError() << "moe-expert-parallel: the routing profile counts MoE layer "
                                  << layerLoads.rbegin()->first << ", but the model has "
                                  << ops.size() << " MoE layers (a profile of another model?)";
      return signalPassFailure();
    }
    for (auto [moeLayer, op] : llvm::enumerate(ops))
      if (failed(split(op, moeLayer)))
        return signalPassFailure();
  }

  /// `moeLayer`: the op's place among the module's MoE layers, which the
  /// loads are keyed by (the routing recorder's numbering).
  LogicalResult split(moe::FusedExpertsOp op, int64_t moeLayer) {
    int64_t experts = llm::getWeightShape(op.getGate().getType())[0];
    int64_t shared = op.getNumSharedExperts();
    if (experts < ranks)
      return op.emitError() << "moe-expert-parallel: " << layerLabel(op) << " has " << experts
                            << " routed experts, fewer than the " << ranks.getValue()
                            << " ranks to split them over";
    if (op.getInputOrder())
      return op.emitError() << "moe-expert-parallel: " << layerLabel(op)
                            << " has act-order (GPTQ desc_act) experts, whose input orders "
                               "expert parallelism does not split yet";
    SmallVector<int32_t> owners, blocks;
    for (int64_t e = 0; e < experts; ++e)
      blocks.push_back(static_cast<int32_t>(e * ranks / experts));
    owners = blocks;
    if (auto it = layerLoads.find(moeLayer); it != layerLoads.end()) {
      if (static_cast<int64_t>(it->second.size()) != experts)
        return op.emitError() << "moe-expert-parallel: the routing profile counts "
                              << it->second.size() << " experts for MoE layer " << moeLayer
                              << " (" << layerLabel(op) << "), which has " << experts
                              << " (a profile of another model?)";
      owners = balance(it->second, ranks);
      // Once per compile (every rank's pass computes the same placement).
      if (rank == 0)
        op.emitRemark() << "moe-expert-parallel: " << layerLabel(op) << " (MoE layer " << moeLayer
                        << "): rank loads " << describeLoads(it->second, owners, ranks)
                        << "; contiguous blocks: " << describeLoads(it->second, blocks, ranks);
    }
    SmallVector<int64_t> local;
    for (int64_t e = 0; e < experts; ++e)
      if (owners[e] == rank)
        local.push_back(e);
    for (int64_t s = 0; s < shared; ++s)
      owners.push_back(static_cast<int32_t>(s % ranks));

    OpBuilder b(op);
    FailureOr<Value> gate = localExperts(b, op, op.getGate(), local, "gate");
    if (failed(gate))
      return failure();
    FailureOr<Value> up = localExperts(b, op, op.getUp(), local, "up");
    FailureOr<Value> down = failed(up) ? FailureOr<Value>(failure())
                                       : localExperts(b, op, op.getDown(), local, "down");
    if (failed(down))
      return failure();
    Location loc = op.getLoc();
    auto rowsType = RankedTensorType::get({ShapedType::kDynamic, op.getType().getDimSize(1)},
                                          b.getF32Type());
    auto rows = moe::ExpertRowsOp::create(
        b, loc, rowsType, op.getActivationAttr(), op.getInput(), op.getIds(), op.getWeights(),
        *gate, *up, *down, op.getSharedGateProj(), op.getSharedUpProj(), op.getSharedDownProj(),
        b.getDenseI32ArrayAttr(owners), b.getI32IntegerAttr(static_cast<int32_t>(rank)),
        op.getActivationQuantAttr());
    auto all = llm::AllReduceOp::create(b, loc, rowsType, rows.getResult(),
                                        b.getI64IntegerAttr(ranks));
    auto combined = moe::CombineRowsOp::create(b, loc, op.getType(), all.getResult(), op.getIds(),
                                               b.getI64IntegerAttr(experts),
                                               b.getI64IntegerAttr(shared));
    if (std::optional<int64_t> layer = attrs::getLayer(op))
      for (Operation *created : {rows.getOperation(), all.getOperation(), combined.getOperation()})
        attrs::setLayer(created, *layer);
    op.replaceAllUsesWith(combined.getResult());
    Value oldWeights[] = {op.getGate(), op.getUp(), op.getDown()};
    op.erase();
    for (Value w : oldWeights)
      if (w.use_empty())
        w.getDefiningOp()->erase();
    return success();
  }
};

} // namespace
