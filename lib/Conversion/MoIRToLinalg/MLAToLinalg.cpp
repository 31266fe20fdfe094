//===- MLAToLinalg.cpp - mla.attend to linalg on tensors -------------------===//
//
// Both forms of mla.attend compute the same function. `form = absorbed`
// computes it in the latent space (W_UK folded into the query, W_UV applied
// after the weighted sum), which reads the cache once and never expands it
// per head; `form = materialized` expands keys and values per head and runs
// ordinary attention. With `prefill = materialized` (set by
// mla-absorb-weights) the lowering picks the cheaper form at run time from
// the call's query count and cache length.
//
//===----------------------------------------------------------------------===//

#include "Builders.h"
#include "Patterns.h"

#include "LLM/IR/LLMOps.h"
#include "MLA/IR/MLAOps.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace moir;
using namespace moir::lowering;

namespace {


/// The operands and sizes both forms share.
struct Attend {
  mla::AttendOp op;
  int64_t heads, nope, vDim, rank, ropeDim, stride;
  /// kv_b_proj, float or packed.
  WeightOperand w;
  Value tokens, len;
  /// The cache rows read: f32, or quantized storage with row scales.
  CacheRows latent, kpe;
};

/// o_lat[t, h] = sum_s softmax(scores)[t, h, s] latent[s] with the scores
/// materialized.
Value latentAttention(OpBuilder &b, Location loc, const Attend &a, Value qLat) {
  AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1), d2 = b.getAffineDimExpr(2);
  mla::AttendOp op = a.op;
  // Every head reads the same cache rows: queries and heads together form
  // the rows m = t * heads + h of one product, so the cache is read once
  // per call, not once per head.
  // scores[m, s] = q_lat[m] . latent[s] + q_pe[m] . k_pe[s]
  ReassociationIndices th = {0, 1};
  auto rows = [&](Value v) {
    return tensor::CollapseShapeOp::create(b, loc, v, ArrayRef<ReassociationIndices>{th, {2}})
        .getResult();
  };
  Value m = arith::MulIOp::create(b, loc, a.tokens, indexConst(b, loc, a.heads));
  // A quantized cache's row scale factors out of the dot product along the
  // row: the products read the stored values, the scale multiplies after.
  auto zeros = [&] { return filled(b, loc, {m, a.len}, b.getF32Type(), 0.0); };
  Value scores = scaleBy(
      b, loc, markParallel(rowContraction(b, loc, rows(qLat), a.latent.values, zeros())),
      a.latent.scales, {d1});
  if (a.kpe.scales) {
    Value rope = markParallel(rowContraction(b, loc, rows(op.getQPe()), a.kpe.values, zeros()));
    scores = markParallel(generic(b, loc, ValueRange{rope, a.kpe.scales}, scores,
                                  {{d0, d1}, {d1}, {d0, d1}}, {par, par},
                                  [](OpBuilder &b, Location loc, ValueRange v) {
                                    Value p = arith::MulFOp::create(b, loc, v[0], v[1]);
                                    linalg::YieldOp::create(
                                        b, loc, arith::AddFOp::create(b, loc, v[2], p).getResult());
                                  }));
  } else {
    scores = markParallel(rowContraction(b, loc, rows(op.getQPe()), a.kpe.values, scores));
  }
  Value scores3 = tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get({ShapedType::kDynamic, a.heads, ShapedType::kDynamic}, b.getF32Type()),
      scores, ArrayRef<ReassociationIndices>{th, {2}},
      ArrayRef<OpFoldResult>{a.tokens, b.getIndexAttr(a.heads), a.len});
  Value probs = maskedSoftmax(b, loc, scores3, op.getPositions(), op.getScale().convertToDouble(),
                              std::nullopt);
  // o_lat[m, c] = sum_s p[m, s] * latent[s, c]: loops (m, c, s), the
  // latent row's c contiguous (an outer-product kernel).
  // ... and, for the weighted sum, into the probabilities.
  Value weights = scaleBy(b, loc, rows(probs), a.latent.scales, {d1});
  Value oLat2 = markParallel(generic(b, loc, ValueRange{weights, a.latent.values},
                                     filled(b, loc, {m, b.getIndexAttr(a.rank)}, b.getF32Type(), 0.0),
                                     {{d0, d2}, {d2, d1}, {d0, d1}}, {par, par, red},
                                     multiplyAccumulate));
  Value oLat = tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get({ShapedType::kDynamic, a.heads, a.rank}, b.getF32Type()), oLat2,
      ArrayRef<ReassociationIndices>{th, {2}},
      ArrayRef<OpFoldResult>{a.tokens, b.getIndexAttr(a.heads), b.getIndexAttr(a.rank)});
  return oLat;
}

/// Per head h, the product of x[t, h, :] with kv_b_proj's rows
/// [h * stride + first, + count):
/// - combineRows: out[t, h, c] = sum_n x[t, h, n] * kv_b[row n, c] (the
///   query absorption, a sum of weight rows);
/// - else: out[t, h, j] = sum_c x[t, h, c] * kv_b[row j, c] (the output
///   projection W_UV, dot products along the rows).
/// A packed weight is read as stored (no dequantized copy per call): with a
/// thread pool, one work item per head (scf.forall), each a 2-D packed
/// product the CPU kernels take (dequantized in registers). Otherwise
/// (float weights; packed ones on GPUs, which map every loop) one generic
/// over loops (t, h, out, in).
Value perHead(OpBuilder &b, Location loc, const Attend &a, Value x, int64_t first, int64_t count,
              bool combineRows) {
  int64_t inDim = combineRows ? count : a.rank, outDim = combineRows ? a.rank : count;
  Type f32 = b.getF32Type();
  auto idx = [&](int64_t v) -> OpFoldResult { return b.getIndexAttr(v); };
  if (!a.w.isPacked() || !attrs::getLoweringConfig(a.op).getParallel()) {
    AffineExpr t = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1), o = b.getAffineDimExpr(2),
               i = b.getAffineDimExpr(3);
    AffineExpr n = combineRows ? i : o, c = combineRows ? o : i;
    AffineExpr row = h * a.stride + first + n;
    Value init = filled(b, loc, {a.tokens, idx(a.heads), idx(outDim)}, f32, 0.0);
    if (a.w.isPacked())
      return markParallel(packedProduct(b, loc, x, {t, h, i}, a.w, row, c, {t, h, o},
                                        {par, par, par, red}, init));
    return markParallel(generic(b, loc, ValueRange{x, a.w.tensor}, init,
                                {{t, h, i}, {row, c}, {t, h, o}}, {par, par, par, red},
                                multiplyAccumulate));
  }
  Value out0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{a.tokens, idx(a.heads), idx(outDim)}, f32);
  auto forall = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{idx(a.heads)},
                                      ValueRange{out0}, std::nullopt);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(forall.getBody());
  Value h = forall.getInductionVars()[0];
  Type elem = cast<RankedTensorType>(x.getType()).getElementType();
  Value xh = slice(b, loc, RankedTensorType::get({ShapedType::kDynamic, inDim}, elem), x,
                   {idx(0), h, idx(0)}, {a.tokens, idx(1), idx(inDim)});
  Value row = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, h, indexConst(b, loc, a.stride)),
                                    indexConst(b, loc, first));
  WeightOperand wh = a.w.slice(b, loc, {row, idx(0)}, {idx(count), idx(a.rank)});
  Value init = filled(b, loc, {a.tokens, idx(outDim)}, f32, 0.0);
  Value r = markKernel(combineRows ? weightRowCombination(b, loc, xh, wh, init)
                                   : weightContraction(b, loc, xh, wh, init));
  parallelInsert(b, loc, forall, r, forall.getRegionIterArgs()[0], {idx(0), h, idx(0)},
                 {a.tokens, idx(1), idx(outDim)});
  return forall.getResult(0);
}

/// W_UK folded into the query, W_UV into the output: attention over the
/// compressed latent cache.
Value absorbed(OpBuilder &b, Location loc, const Attend &a) {
  mla::AttendOp op = a.op;
  // q_lat[t, h, c] = sum_n q_nope[t, h, n] * kv_b[h * stride + n, c]
  Value qLat = perHead(b, loc, a, op.getQNope(), 0, a.nope, /*combineRows=*/true);
  Value oLat = op.getFlash()
                   // Online softmax over blocks of latent rows: the latent cache is
                   // both the keys (with the RoPE cache) and the values.
                   ? flashAttention(b, loc, {{qLat, op.getQPe()}, {a.latent, a.kpe}, a.latent,
                                             op.getPositions(), a.len,
                                             op.getScale().convertToDouble(), std::nullopt,
                                             attrs::getLoweringConfig(op)})
                   : latentAttention(b, loc, a, qLat);
  // out[t, h, v] = sum_c o_lat[t, h, c] * kv_b[h * stride + nope + v, c]
  Value out = perHead(b, loc, a, oLat, a.nope, a.vDim, /*combineRows=*/false);
  return tensor::CastOp::create(b, loc, op.getType(), out);
}

/// Keys and values expanded per head from the cache, then ordinary
/// attention.
Value materialized(OpBuilder &b, Location loc, const Attend &a) {
  AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1),
             d2 = b.getAffineDimExpr(2), d3 = b.getAffineDimExpr(3);
  mla::AttendOp op = a.op;
  // The cache rows expanded per head: a quantized latent cache is
  // dequantized once (the expansion reads every row against every head's
  // weights).
  Value latent = dequantized(b, loc, a.latent);
  Value kNope, values;
  if (a.w.isPacked()) {
    // Every row of kv_b against every cache row: one packed contraction
    // [len, heads * stride], then k_nope and v are its column slices per
    // head.
    Value all = markParallel(weightContraction(
        b, loc, latent, a.w,
        filled(b, loc, {a.len, b.getIndexAttr(a.heads * a.stride)}, b.getF32Type(), 0.0)));
    auto perHead = RankedTensorType::get({ShapedType::kDynamic, a.heads, a.stride}, b.getF32Type());
    Value split = tensor::ExpandShapeOp::create(
        b, loc, perHead, all, ArrayRef<ReassociationIndices>{{0}, {1, 2}},
        ArrayRef<OpFoldResult>{a.len, b.getIndexAttr(a.heads), b.getIndexAttr(a.stride)});
    auto columns = [&](int64_t first, int64_t count) {
      OpFoldResult zero = b.getIndexAttr(0);
      return slice(b, loc,
                   RankedTensorType::get({ShapedType::kDynamic, a.heads, count}, b.getF32Type()),
                   split, {zero, zero, b.getIndexAttr(first)},
                   {a.len, b.getIndexAttr(a.heads), b.getIndexAttr(count)});
    };
    kNope = columns(0, a.nope);
    values = columns(a.nope, a.vDim);
  } else {
    // k_nope[s, h, n] = sum_c latent[s, c] * kv_b[h * stride + n, c]
    kNope = markParallel(generic(b, loc, ValueRange{latent, a.w.tensor},
                                 filled(b, loc, {a.len, b.getIndexAttr(a.heads), b.getIndexAttr(a.nope)}, b.getF32Type(), 0.0),
                                 {{d0, d3}, {d1 * a.stride + d2, d3}, {d0, d1, d2}}, {par, par, par, red},
                                 multiplyAccumulate));
    // v[s, h, e] = sum_c latent[s, c] * kv_b[h * stride + nope + e, c]
    values = markParallel(generic(b, loc, ValueRange{latent, a.w.tensor},
                                  filled(b, loc, {a.len, b.getIndexAttr(a.heads), b.getIndexAttr(a.vDim)}, b.getF32Type(), 0.0),
                                  {{d0, d3}, {d1 * a.stride + a.nope + d2, d3}, {d0, d1, d2}}, {par, par, par, red},
                                  multiplyAccumulate));
  }
  if (op.getFlash()) {
    // Flash attention: scores q_nope[t, h] . k_nope[s, h] (per head) plus
    // q_pe[t, h] . k_pe[s] (one RoPE key row for every head, read as stored).
    Value out = flashAttention(b, loc, {{op.getQNope(), op.getQPe()},
                                        {CacheRows{kNope, Value()}, a.kpe},
                                        CacheRows{values, Value()}, op.getPositions(), a.len,
                                        op.getScale().convertToDouble(), std::nullopt,
                                        attrs::getLoweringConfig(op)});
    return tensor::CastOp::create(b, loc, op.getType(), out);
  }
  Value kpe = dequantized(b, loc, a.kpe);
  // scores[t, h, s] = q_nope[t, h] . k_nope[s, h] + q_pe[t, h] . k_pe[s]
  SmallVector<OpFoldResult> scoreSizes = {a.tokens, b.getIndexAttr(a.heads), a.len};
  Value scores = markParallel(generic(b, loc, ValueRange{op.getQNope(), kNope},
                         filled(b, loc, scoreSizes, b.getF32Type(), 0.0),
                         {{d0, d1, d3}, {d2, d1, d3}, {d0, d1, d2}}, {par, par, par, red}, multiplyAccumulate));
  scores = markParallel(generic(b, loc, ValueRange{op.getQPe(), kpe}, scores,
                   {{d0, d1, d3}, {d2, d3}, {d0, d1, d2}}, {par, par, par, red}, multiplyAccumulate));
  Value probs = maskedSoftmax(b, loc, scores, op.getPositions(), op.getScale().convertToDouble(),
                              std::nullopt);
  // out[t, h, e] = sum_s p[t, h, s] * v[s, h, e]
  Value out = markParallel(generic(b, loc, ValueRange{probs, values},
                      filled(b, loc, {a.tokens, b.getIndexAttr(a.heads), b.getIndexAttr(a.vDim)}, b.getF32Type(), 0.0),
                      {{d0, d1, d2}, {d2, d1, d3}, {d0, d1, d3}}, {par, par, red, par}, multiplyAccumulate));
  return tensor::CastOp::create(b, loc, op.getType(), out);
}

struct LowerAttend : OpRewritePattern<mla::AttendOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(mla::AttendOp op, PatternRewriter &b) const override {
    // A quantized kv_b_proj is read packed: per head by the absorbed
    // products, whole by the materialized one.
    FailureOr<WeightOperand> kvB = weightOperand(op, op.getKvBProj());
    if (failed(kvB))
      return failure();
    Location loc = op.getLoc();
    mla::ConfigAttr c = op.getConfig();
    Attend a{op, c.getNumHeads(), c.getQkNopeHeadDim(), c.getVHeadDim(), c.getKvLoraRank(),
             c.getQkRopeHeadDim(), 0, *kvB, {}, {}, {}, {}};
    Value latentCache = op.getLatentCache();
    if (auto dq = latentCache.getDefiningOp<llm::DequantizeCacheOp>())
      latentCache = dq.getCache();
    a.stride = a.nope + a.vDim;
    int64_t capacity = cast<RankedTensorType>(latentCache.getType()).getDimSize(0);
    if (ShapedType::isDynamic(capacity))
      return b.notifyMatchFailure(op, "needs a static cache capacity");
    a.tokens = tensor::DimOp::create(b, loc, op.getQNope(), 0);
    a.len = validLength(b, loc, op.getPositions(), capacity);
    a.latent = readCache(b, loc, op.getLatentCache(), a.len);
    a.kpe = readCache(b, loc, op.getRopeCache(), a.len);

    std::optional<mla::Form> prefillForm = op.getPrefillForm();
    if (op.getForm() == mla::Form::materialized) {
      b.replaceOp(op, materialized(b, loc, a));
      return success();
    }
    if (prefillForm != mla::Form::materialized) {
      b.replaceOp(op, absorbed(b, loc, a));
      return success();
    }
    // mla-absorb-weights' cost model with this call's T queries and S cache
    // rows (multiply-adds per head): materialized S * rank * (nope + v) +
    // T * S * (nope + rope + v) against absorbed T * (rank * (nope + v) +
    // S * (2 * rank + rope)).
    auto cst = [&](int64_t v) { return indexConst(b, loc, v); };
    auto mul = [&](Value x, Value y) { return arith::MulIOp::create(b, loc, x, y).getResult(); };
    auto add = [&](Value x, Value y) { return arith::AddIOp::create(b, loc, x, y).getResult(); };
    Value t = a.tokens, s = a.len;
    Value expand = cst(a.rank * (a.nope + a.vDim));
    Value matCost = add(mul(s, expand), mul(mul(t, s), cst(a.nope + a.ropeDim + a.vDim)));
    Value absCost = mul(t, add(expand, mul(s, cst(2 * a.rank + a.ropeDim))));
    Value useMaterialized =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, matCost, absCost);
    auto choice = scf::IfOp::create(
        b, loc, useMaterialized,
        [&](OpBuilder &nb, Location l) { scf::YieldOp::create(nb, l, materialized(nb, l, a)); },
        [&](OpBuilder &nb, Location l) { scf::YieldOp::create(nb, l, absorbed(nb, l, a)); });
    b.replaceOp(op, choice.getResults());
    return success();
  }
};

} // namespace

void moir::lowering::populateMLAToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerAttend>(patterns.getContext());
}
