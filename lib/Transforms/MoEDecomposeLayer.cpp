//===- MoEDecomposeLayer.cpp - moe.layer into its steps -------------------===//

#include "MoE/IR/MoEOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_MOEDECOMPOSELAYERPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

/// The dense shared expert: down(act(gate x) * (up x)), optionally scaled per
/// token by sigmoid(shared_gate x). With the layer's activation_quant (W8A8)
/// the inputs of its three projections are quantized per token, as the
/// importer quantizes a linear's (the down input over the shared FFN's whole
/// width; moe-fuse-experts then leaves these linears unfused).
Value createSharedExpert(OpBuilder &b, Location loc, moe::LayerOp op) {
  Value x = op.getInput();
  auto xType = cast<RankedTensorType>(x.getType());
  std::optional<llm::DynamicQuant> quant = op.getActivationQuant();
  Value xq = llm::quantizeRows(b, loc, x, quant);
  Value gate = llm::createLinearOnQuantized(b, loc, xq, op.getSharedGateProj(), quant);
  Value up = llm::createLinearOnQuantized(b, loc, xq, op.getSharedUpProj(), quant);
  Value hidden = llm::GLUOp::create(b, loc, gate.getType(),
                                    op.getActivationAttr(), gate, up);
  Value out = llm::createLinearOnQuantized(b, loc, llm::quantizeRows(b, loc, hidden, quant),
                                          op.getSharedDownProj(), quant);
  if (!op.getSharedExpertGate())
    return out;

  Value logit = llm::LinearOp::create(b, loc, x, op.getSharedExpertGate()); // [T, 1]
  Value scale = llm::ActivationOp::create(
      b, loc, logit.getType(),
      llm::ActivationKindAttr::get(b.getContext(), llm::ActivationKind::sigmoid),
      logit);
  auto scaleType = cast<RankedTensorType>(scale.getType());
  Value perToken = tensor::CollapseShapeOp::create(
      b, loc, RankedTensorType::get({scaleType.getDimSize(0)}, xType.getElementType()),
      scale, ArrayRef<ReassociationIndices>{{0, 1}});
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  Value init = tensor::EmptyOp::create(b, loc, sizes, xType.getElementType());
  Value broadcast =
      linalg::BroadcastOp::create(b, loc, perToken, init, ArrayRef<int64_t>{1})
          .getResult()[0];
  return arith::MulFOp::create(b, loc, out, broadcast);
}

struct DecomposeLayer : OpRewritePattern<moe::LayerOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(moe::LayerOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto xType = cast<RankedTensorType>(x.getType());
    int64_t tokens = xType.getDimSize(0);
    int64_t experts = llm::getWeightShape(op.getGate().getType())[0];
    int64_t topK = op.getRouting().getTopK();
    MLIRContext *ctx = rewriter.getContext();

    auto router = llm::LinearOp::create(rewriter, loc, x, op.getRouter());
    // Expert choice is discrete: a backend keeps this product in f32 even
    // where it rounds activations for speed (moir-cpu-contraction-kernels'
    // bf16-dot), so rounding cannot flip a near-tie between experts.
    router.setPrecise(true);
    Value logits = router;
    auto weightsType = RankedTensorType::get({tokens, topK}, xType.getElementType());
    auto idsType = RankedTensorType::get({tokens, topK}, IntegerType::get(ctx, 32));
    auto route = moe::RouteOp::create(rewriter, loc, weightsType, idsType, logits,
                                      op.getCorrectionBias(), op.getRoutingAttr());

    int64_t copies = llm::multiplyDims(tokens, topK);
    auto rowsType = RankedTensorType::get({copies, xType.getDimSize(1)},
                                          xType.getElementType());
    auto offsetsType = RankedTensorType::get({experts + 1}, IntegerType::get(ctx, 32));
    auto sourcesType = RankedTensorType::get({copies}, IntegerType::get(ctx, 32));
    auto dispatch = moe::DispatchOp::create(
        rewriter, loc, rowsType, offsetsType, sourcesType, x, route.getIds(),
        rewriter.getI64IntegerAttr(experts));

    Value expertOut = moe::ExpertFFNOp::create(
        rewriter, loc, rowsType, op.getActivationAttr(), dispatch.getRows(),
        dispatch.getOffsets(), op.getGate(), op.getUp(), op.getDown(), op.getInputOrder(),
        op.getActivationQuantAttr());
    Value result = moe::CombineOp::create(rewriter, loc, xType, expertOut,
                                          dispatch.getSources(), route.getWeights());
    if (op.hasSharedExpert())
      result = arith::AddFOp::create(rewriter, loc, result,
                                     createSharedExpert(rewriter, loc, op));
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct MoEDecomposeLayerPass
    : moir::impl::MoEDecomposeLayerPassBase<MoEDecomposeLayerPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DecomposeLayer>(&getContext());
    if (failed(moir::applyPatternsKeepingLayers(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
