//===- MLAToLinalg.cpp - mla.attend to linalg on tensors -------------------===//
//
// Both forms of mla.attend compute the same function; this lowering computes
// it in the latent space (W_UK folded into the query, W_UV applied after the
// weighted sum), which reads the cache once and never expands it per head.
//
//===----------------------------------------------------------------------===//

#include "Builders.h"
#include "Patterns.h"

#include "MLA/IR/MLAOps.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace moir;
using namespace moir::lowering;

namespace {


struct LowerAttend : OpRewritePattern<mla::AttendOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(mla::AttendOp op, PatternRewriter &b) const override {
    if (isa<llm::QTensorType>(op.getKvBProj().getType()))
      return b.notifyMatchFailure(op, "quantized weights are not lowered yet");
    Location loc = op.getLoc();
    mla::ConfigAttr c = op.getConfig();
    int64_t heads = c.getNumHeads(), nope = c.getQkNopeHeadDim(), vDim = c.getVHeadDim(),
            rank = c.getKvLoraRank(), ropeDim = c.getQkRopeHeadDim();
    int64_t stride = nope + vDim;
    int64_t capacity = cast<RankedTensorType>(op.getLatentCache().getType()).getDimSize(0);
    if (ShapedType::isDynamic(capacity))
      return b.notifyMatchFailure(op, "needs a static cache capacity");
    Value kvb = op.getKvBProj();
    Value tokens = tensor::DimOp::create(b, loc, op.getQNope(), 0);
    Value len = validLength(b, loc, op.getPositions(), capacity);
    Value latent = prefix(b, loc, op.getLatentCache(), len);
    Value kpe = prefix(b, loc, op.getRopeCache(), len);
    AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1),
               d2 = b.getAffineDimExpr(2), d3 = b.getAffineDimExpr(3);
    // q_lat[t, h, c] = sum_n q_nope[t, h, n] * kv_b[h * stride + n, c]
    Value qLat = markParallel(generic(b, loc, ValueRange{op.getQNope(), kvb},
                         filled(b, loc, {tokens, b.getIndexAttr(heads), b.getIndexAttr(rank)}, b.getF32Type(), 0.0),
                         {{d0, d1, d3}, {d1 * stride + d3, d2}, {d0, d1, d2}}, {par, par, par, red},
                         multiplyAccumulate));
    // scores[t, h, s] = q_lat . latent[s] + q_pe . k_pe[s]
    SmallVector<OpFoldResult> scoreSizes = {tokens, b.getIndexAttr(heads), len};
    Value scores = markParallel(generic(b, loc, ValueRange{qLat, latent}, filled(b, loc, scoreSizes, b.getF32Type(), 0.0),
                           {{d0, d1, d3}, {d2, d3}, {d0, d1, d2}}, {par, par, par, red}, multiplyAccumulate));
    scores = markParallel(generic(b, loc, ValueRange{op.getQPe(), kpe}, scores,
                     {{d0, d1, d3}, {d2, d3}, {d0, d1, d2}}, {par, par, par, red}, multiplyAccumulate));
    (void)ropeDim;
    Value probs = maskedSoftmax(b, loc, scores, op.getPositions(), op.getScale().convertToDouble(),
                                std::nullopt);
    // o_lat[t, h, c] = sum_s p[t, h, s] * latent[s, c]
    // Loops (t, h, s, c): the innermost runs along a cache row, contiguous
    // and vectorizable, instead of striding down the cache per element.
    Value oLat = markParallel(generic(b, loc, ValueRange{probs, latent},
                         filled(b, loc, {tokens, b.getIndexAttr(heads), b.getIndexAttr(rank)}, b.getF32Type(), 0.0),
                         {{d0, d1, d2}, {d2, d3}, {d0, d1, d3}}, {par, par, red, par}, multiplyAccumulate));
    // out[t, h, v] = sum_c o_lat[t, h, c] * kv_b[h * stride + nope + v, c]
    Value out = markParallel(generic(b, loc, ValueRange{oLat, kvb},
                        filled(b, loc, {tokens, b.getIndexAttr(heads), b.getIndexAttr(vDim)}, b.getF32Type(), 0.0),
                        {{d0, d1, d3}, {d1 * stride + nope + d2, d3}, {d0, d1, d2}}, {par, par, par, red},
                        multiplyAccumulate));
    b.replaceOp(op, tensor::CastOp::create(b, loc, op.getType(), out).getResult());
    return success();
  }
};

} // namespace

void moir::lowering::populateMLAToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerAttend>(patterns.getContext());
}
