//===- MoEFuseExperts.cpp - dispatch + expert FFNs + combine as one op -----===//

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "MoE/IR/MoEOps.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_MOEFUSEEXPERTSPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

/// The weights of a dense gated FFN `down(act(gate x) * (up x))` over `x`
/// computing `v`, if `v` is one of the fusable width.
struct SharedExpert {
  Value gate, up, down;
};
std::optional<SharedExpert> matchSharedExpert(Value v, Value x, llm::ActivationKind activation,
                                              int64_t routedFFN) {
  auto down = v.getDefiningOp<llm::LinearOp>();
  if (!down || down.getBias() || !down->hasOneUse())
    return std::nullopt;
  auto glu = down.getInput().getDefiningOp<llm::GLUOp>();
  if (!glu || glu.getActivation() != activation || !glu->hasOneUse())
    return std::nullopt;
  auto gate = glu.getGate().getDefiningOp<llm::LinearOp>();
  auto up = glu.getUp().getDefiningOp<llm::LinearOp>();
  if (!gate || !up || gate.getInput() != x || up.getInput() != x || gate.getBias() ||
      up.getBias() || !gate->hasOneUse() || !up->hasOneUse())
    return std::nullopt;
  int64_t width = llm::getWeightShape(gate.getWeight().getType())[0];
  if (ShapedType::isDynamic(width) || routedFFN <= 0 || width % routedFFN != 0)
    return std::nullopt;
  return SharedExpert{gate.getWeight(), up.getWeight(), down.getWeight()};
}

struct FuseExperts : OpRewritePattern<moe::CombineOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(moe::CombineOp combine,
                                PatternRewriter &rewriter) const override {
    auto ffn = combine.getRows().getDefiningOp<moe::ExpertFFNOp>();
    if (!ffn || !ffn->hasOneUse())
      return rewriter.notifyMatchFailure(combine, "rows are not one expert_ffn's");
    auto dispatch = ffn.getRows().getDefiningOp<moe::DispatchOp>();
    if (!dispatch || ffn.getOffsets() != dispatch.getOffsets() ||
        combine.getSources() != dispatch.getSources() || !dispatch.getRows().hasOneUse() ||
        !dispatch.getOffsets().hasOneUse() || !dispatch.getSources().hasOneUse())
      return rewriter.notifyMatchFailure(combine, "not one dispatch's rows, offsets and sources");
    Value x = dispatch.getInput();
    if (x.getType() != combine.getType())
      return rewriter.notifyMatchFailure(combine, "input and result types differ");

    // A shared expert added to the combined rows joins the fused op.
    Operation *replaced = combine;
    std::optional<SharedExpert> shared;
    if (combine->hasOneUse()) {
      if (auto add = dyn_cast<arith::AddFOp>(*combine->user_begin())) {
        Value other = add.getLhs() == combine.getResult() ? add.getRhs() : add.getLhs();
        int64_t routedFFN = llm::getWeightShape(ffn.getGate().getType())[1];
        shared = matchSharedExpert(other, x, ffn.getActivation(), routedFFN);
        if (shared)
          replaced = add;
      }
    }
    rewriter.setInsertionPoint(replaced);
    auto fused = moe::FusedExpertsOp::create(
        rewriter, combine.getLoc(), combine.getType(), ffn.getActivationAttr(), x,
        dispatch.getIds(), combine.getWeights(), ffn.getGate(), ffn.getUp(), ffn.getDown(),
        shared ? shared->gate : Value(), shared ? shared->up : Value(),
        shared ? shared->down : Value(), ffn.getInputOrder(), ffn.getActivationQuantAttr());
    rewriter.replaceOp(replaced, fused.getResult());
    // The unfused producers are now dead; the greedy driver erases them.
    return success();
  }
};

struct MoEFuseExpertsPass : moir::impl::MoEFuseExpertsPassBase<MoEFuseExpertsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseExperts>(&getContext());
    if (failed(moir::applyPatternsKeepingLayers(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
