//===- MLADecomposeAttention.cpp - mla.attention into its steps -----------===//

#include "MLA/IR/MLAOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_MLADECOMPOSEATTENTIONPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

Value createRMSNorm(OpBuilder &b, Location loc, Value x, Value weight,
                    FloatAttr epsilon) {
  return llm::RMSNormOp::create(b, loc, x.getType(), x, weight, epsilon, FloatAttr());
}

/// Columns [offset, offset + size) of the innermost dimension of `x`.
Value sliceLast(OpBuilder &b, Location loc, Value x, int64_t offset, int64_t size) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  offsets.back() = b.getIndexAttr(offset);
  sizes.back() = b.getIndexAttr(size);
  SmallVector<int64_t> shape(type.getShape());
  shape.back() = size;
  return tensor::ExtractSliceOp::create(b, loc, type.clone(shape), x, offsets,
                                        sizes, strides);
}

/// [T, a * b] -> [T, a, b].
Value splitLast(OpBuilder &b, Location loc, Value x, int64_t a, int64_t inner) {
  auto type = cast<RankedTensorType>(x.getType());
  auto result = RankedTensorType::get({type.getDimSize(0), a, inner},
                                      type.getElementType());
  SmallVector<OpFoldResult> shape{tensor::getMixedSize(b, loc, x, 0),
                                  b.getIndexAttr(a), b.getIndexAttr(inner)};
  return tensor::ExpandShapeOp::create(b, loc, result, x,
                                       ArrayRef<ReassociationIndices>{{0}, {1, 2}},
                                       shape);
}

/// [T, a, b] -> [T, a * b].
Value mergeLast(OpBuilder &b, Location loc, Value x) {
  return tensor::CollapseShapeOp::create(
      b, loc, x, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
}

struct DecomposeAttention : OpRewritePattern<mla::AttentionOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(mla::AttentionOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    mla::ConfigAttr config = op.getConfig();
    int64_t heads = config.getNumHeads();
    int64_t nope = config.getQkNopeHeadDim();
    int64_t ropeDim = config.getQkRopeHeadDim();
    int64_t kvLora = config.getKvLoraRank();
    Value x = op.getInput();
    Value positions = op.getPositions();
    FloatAttr eps = op.getEpsilonAttr();

    // W8A8: each projection's input quantized per token, as the importer
    // quantizes a linear's (int8 codes times a scale: not rounded again).
    std::optional<llm::DynamicQuant> quant = op.getActivationQuant();
    auto quantize = [&](Value input) { return llm::quantizeRows(rewriter, loc, input, quant); };
    auto project = [&](Value input, Value weight) -> Value {
      return llm::createLinearOnQuantized(rewriter, loc, input, weight, quant);
    };
    Value xq = quantize(x);

    // Queries, per head split into the position-free and the RoPE part.
    Value q;
    if (Value qProj = op.getQProj()) {
      q = project(xq, qProj);
    } else {
      Value qa = project(xq, op.getQAProj());
      qa = createRMSNorm(rewriter, loc, qa, op.getQANorm(), eps);
      q = project(quantize(qa), op.getQBProj());
    }
    Value q3 = splitLast(rewriter, loc, q, heads, config.getQHeadDim());
    Value qNope = sliceLast(rewriter, loc, q3, 0, nope);
    Value qPe = sliceLast(rewriter, loc, q3, nope, ropeDim);
    qPe = llm::RopeOp::create(rewriter, loc, qPe.getType(), qPe, positions,
                              op.getRopeAttr());

    // The compressed latent and the one RoPE key shared by all heads.
    // The cache keeps the latent as kv_b_proj multiplies it: quantized,
    // each token's row on its own.
    Value kv = project(xq, op.getKvAProj());
    Value latent = sliceLast(rewriter, loc, kv, 0, kvLora);
    latent = quantize(createRMSNorm(rewriter, loc, latent, op.getKvANorm(), eps));
    Value kPe = splitLast(rewriter, loc, sliceLast(rewriter, loc, kv, kvLora, ropeDim),
                          1, ropeDim);
    kPe = llm::RopeOp::create(rewriter, loc, kPe.getType(), kPe, positions,
                              op.getRopeAttr());
    kPe = mergeLast(rewriter, loc, kPe);

    Value latentCache = llm::KVCacheUpdateOp::create(
        rewriter, loc, op.getLatentCache().getType(), latent, op.getLatentCache(),
        op.getOffset());
    Value ropeCache = llm::KVCacheUpdateOp::create(
        rewriter, loc, op.getRopeCache().getType(), kPe, op.getRopeCache(),
        op.getOffset());

    auto xType = cast<RankedTensorType>(x.getType());
    auto attendType = RankedTensorType::get(
        {xType.getDimSize(0), heads, config.getVHeadDim()}, xType.getElementType());
    Value attended = mla::AttendOp::create(
        rewriter, loc, attendType, qNope, qPe, latentCache, ropeCache, positions,
        op.getKvBProj(), config, op.getScaleAttr(),
        mla::FormAttr::get(rewriter.getContext(), mla::Form::materialized),
        /*prefill_form=*/nullptr, /*flash=*/nullptr);
    Value out = project(quantize(mergeLast(rewriter, loc, attended)), op.getOProj());
    rewriter.replaceOp(op, {out, latentCache, ropeCache});
    return success();
  }
};

struct MLADecomposeAttentionPass
    : moir::impl::MLADecomposeAttentionPassBase<MLADecomposeAttentionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<DecomposeAttention>(&getContext());
    if (failed(moir::applyPatternsKeepingLayers(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
