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
/// an error naming it when its experts are not separate tensors.
FailureOr<Value> localExperts(OpBuilder &b, Operation *user, Value w, ArrayRef<int64_t> local,
                              StringRef what) {
  auto stacked = w.getDefiningOp<llm::StackedWeightOp>();
  if (!stacked) {
    InFlightDiagnostic diag = user->emitError()
                              << "moe-expert-parallel: " << layerLabel(user) << "'s expert " << what
                              << " weight is not one checkpoint tensor per expert";
    if (auto one = w.getDefiningOp<llm::WeightOp>())
      diag << " ('" << one.getName() << "' holds every expert; splitting such a tensor is "
                                         "not supported yet: compile from the Hugging Face "
                                         "checkpoint)";
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

struct MoEExpertParallelPass
    : moir::impl::MoEExpertParallelPassBase<MoEExpertParallelPass> {
  using MoEExpertParallelPassBase::MoEExpertParallelPassBase;

  void runOnOperation() override {
    if (ranks < 1 || rank < 0 || rank >= ranks) {
      getOperation()->emitError() << "moe-expert-parallel: rank " << rank.getValue() << " of "
                                  << ranks.getValue()
                                  << " ranks is out of range";
      return signalPassFailure();
    }
    if (ranks == 1)
      return;
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
    for (moe::FusedExpertsOp op : ops)
      if (failed(split(op)))
        return signalPassFailure();
  }

  LogicalResult split(moe::FusedExpertsOp op) {
    int64_t experts = llm::getWeightShape(op.getGate().getType())[0];
    int64_t shared = op.getNumSharedExperts();
    if (experts < ranks)
      return op.emitError() << "moe-expert-parallel: " << layerLabel(op) << " has " << experts
                            << " routed experts, fewer than the " << ranks.getValue()
                            << " ranks to split them over";
    SmallVector<int32_t> owners;
    SmallVector<int64_t> local;
    for (int64_t e = 0; e < experts; ++e) {
      owners.push_back(static_cast<int32_t>(e * ranks / experts));
      if (owners.back() == rank)
        local.push_back(e);
    }
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
        b.getDenseI32ArrayAttr(owners), b.getI32IntegerAttr(static_cast<int32_t>(rank)));
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
