//===- LLMToLinalg.cpp - llm ops to linalg on tensors ----------------------===//

#include "Builders.h"
#include "Patterns.h"

#include "LLM/IR/LLMOps.h"
#include "moir/Conversion/Passes.h"

#include "mlir/IR/PatternMatch.h"

#include <cmath>

using namespace mlir;
using namespace moir;
using namespace moir::lowering;

namespace {


/// A quantized weight's dequantized f32 values (consumers with no packed
/// kernel).
struct LowerDequantize : OpRewritePattern<llm::DequantizeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::DequantizeOp op, PatternRewriter &b) const override {
    FailureOr<WeightOperand> w = weightOperand(op, op.getInput());
    if (failed(w))
      return failure();
    Value f32 = dequantizeWeight(b, op.getLoc(), *w);
    if (!op.getType().getElementType().isF32())
      f32 = generic(b, op.getLoc(), f32,
                    tensor::EmptyOp::create(b, op.getLoc(), op.getType().getShape(),
                                            op.getType().getElementType()),
                    {dims(b, op.getType().getRank()), dims(b, op.getType().getRank())},
                    SmallVector<utils::IteratorType>(op.getType().getRank(), par),
                    [&](OpBuilder &b, Location loc, ValueRange a) {
                      linalg::YieldOp::create(b, loc,
                                              arith::TruncFOp::create(b, loc, op.getType().getElementType(), a[0])
                                                  .getResult());
                    });
    b.replaceOp(op, f32);
    return success();
  }
};

struct LowerRMSNorm : OpRewritePattern<llm::RMSNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::RMSNormOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto type = cast<RankedTensorType>(x.getType());
    unsigned rank = type.getRank();
    int64_t d = type.getShape().back();
    if (ShapedType::isDynamic(d) || !type.getElementType().isF32())
      return b.notifyMatchFailure(op, "needs a static f32 innermost dimension");
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
    SmallVector<OpFoldResult> rowSizes(sizes.begin(), sizes.end() - 1);
    SmallVector<AffineExpr> all = dims(b, rank), rows = dims(b, rank - 1);
    SmallVector<utils::IteratorType> iters(rank, par);
    iters.back() = red;
    // [tokens, hidden]: both steps parallel over the tokens (a prefill's
    // 512 rows of 1024 were 1% of a Mixtral-shaped prefill on one thread;
    // a decode step's one row runs unforked). Per-head norms ([tokens,
    // heads, dim]) stay on one thread: their decode step is heads items.
    auto overRows = [&](Value v) { return rank == 2 ? markParallel(v) : v; };
    Value sumsq = overRows(generic(b, loc, x, filled(b, loc, rowSizes, b.getF32Type(), 0.0),
                          {all, rows}, iters, [](OpBuilder &b, Location loc, ValueRange a) {
                            Value sq = arith::MulFOp::create(b, loc, a[0], a[0]);
                            linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, sq, a[1]).getResult());
                          }));
    double eps = op.getEpsilon().convertToDouble();
    std::optional<APFloat> offset = op.getOffset();
    SmallVector<utils::IteratorType> parIters(rank, par);
    Value out = overRows(generic(
        b, loc, ValueRange{x, sumsq, op.getWeight()},
        tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()),
        {all, rows, {b.getAffineDimExpr(rank - 1)}, all}, parIters,
        [&](OpBuilder &b, Location loc, ValueRange a) {
          Value mean = arith::DivFOp::create(b, loc, a[1], f32Const(b, loc, static_cast<double>(d)));
          Value var = arith::AddFOp::create(b, loc, mean, f32Const(b, loc, eps));
          Value inv = math::RsqrtOp::create(b, loc, var);
          Value y = arith::MulFOp::create(b, loc, a[0], inv);
          Value w = toF32(b, loc, a[2]);
          // Gemma's (offset + weight), summed in f32 before the product.
          if (offset)
            w = arith::AddFOp::create(b, loc, f32Const(b, loc, offset->convertToDouble()), w);
          linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, y, w).getResult());
        }));
    b.replaceOp(op, out);
    return success();
  }
};

struct LowerLinear : OpRewritePattern<llm::LinearOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::LinearOp op, PatternRewriter &b) const override {
    FailureOr<WeightOperand> weight = weightOperand(op, op.getWeight());
    if (failed(weight))
      return failure();
    Location loc = op.getLoc();
    Value x = op.getInput();
    if (cast<RankedTensorType>(x.getType()).getRank() != 2)
      return b.notifyMatchFailure(op, "needs a rank-2 input");
    // W8A8 int8 rows the target's kernel quantizes itself: the raw rows.
    bool rowQuant = false;
    if (auto quant = x.getDefiningOp<llm::DynamicQuantOp>();
        quant && foldsRowQuant(op, op.getWeight(), quant.getFormat())) {
      x = quant.getInput();
      rowQuant = true;
    }
    auto outType = cast<RankedTensorType>(op.getType());
    SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, x, 0),
                                       b.getIndexAttr(outType.getDimSize(1))};
    Value init;
    if (Value bias = op.getBias()) {
      // Accumulate onto the bias.
      AffineExpr m2 = b.getAffineDimExpr(0), n2 = b.getAffineDimExpr(1);
      init = generic(b, loc, bias, tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()),
                     {{n2}, {m2, n2}}, {par, par}, [](OpBuilder &b, Location loc, ValueRange a) {
                       linalg::YieldOp::create(b, loc, toF32(b, loc, a[0]));
                     });
    } else {
      init = filled(b, loc, sizes, b.getF32Type(), 0.0);
    }
    Value out = markParallel(weightContraction(b, loc, x, *weight, init));
    if (rowQuant)
      attrs::mark(out.getDefiningOp(), attrs::rowQuantName());
    else if (op.getPrecise())
      attrs::mark(out.getDefiningOp(), attrs::preciseName());
    b.replaceOp(op, out);
    return success();
  }
};

struct LowerPermute : OpRewritePattern<llm::PermuteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::PermuteOp op, PatternRewriter &b) const override {
    // A copy of hidden-size rows, split across cores like the dispatch's.
    b.replaceOp(op, markParallel(gatherInner(b, op.getLoc(), op.getInput(), op.getOrder())));
    return success();
  }
};

struct LowerDynamicQuant : OpRewritePattern<llm::DynamicQuantOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::DynamicQuantOp op, PatternRewriter &b) const override {
    if (!cast<RankedTensorType>(op.getType()).getElementType().isF32())
      return b.notifyMatchFailure(op, "needs f32 rows");
    // Rows only linears read whose kernels quantize them: LowerLinear
    // hands them the raw rows, and this op is left without users.
    if (!op->use_empty() && llvm::all_of(op->getUsers(), [&](Operation *user) {
          auto linear = dyn_cast<llm::LinearOp>(user);
          return linear && linear.getInput() == op.getResult() &&
                 foldsRowQuant(linear, linear.getWeight(), op.getFormat());
        }))
      return b.notifyMatchFailure(op, "its linears quantize the rows themselves");
    b.replaceOp(op, dynamicQuantRows(b, op.getLoc(), op.getInput(), op.getFormat(),
                                     /*parallel=*/true));
    return success();
  }
};

struct LowerStaticQuant : OpRewritePattern<llm::StaticQuantOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::StaticQuantOp op, PatternRewriter &b) const override {
    if (!cast<RankedTensorType>(op.getType()).getElementType().isF32())
      return b.notifyMatchFailure(op, "needs f32 values");
    b.replaceOp(op, staticQuant(b, op.getLoc(), op.getInput(), op.getScale(), op.getFormat()));
    return success();
  }
};

struct LowerEmbedding : OpRewritePattern<llm::EmbeddingOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::EmbeddingOp op, PatternRewriter &b) const override {
    FailureOr<WeightOperand> table = weightOperand(op, op.getTable());
    if (failed(table))
      return failure();
    Location loc = op.getLoc();
    SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, op.getIds(), 0),
                                       b.getIndexAttr(op.getType().getDimSize(1))};
    AffineExpr t = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1);
    std::optional<APFloat> scale = op.getScale();
    Value out = generic(b, loc, op.getIds(), tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()),
                        {{t}, {t, h}}, {par, par}, [&](OpBuilder &b, Location loc, ValueRange a) {
                          Value row = arith::IndexCastOp::create(b, loc, b.getIndexType(), a[0]);
                          Value col = linalg::IndexOp::create(b, loc, 1);
                          auto yield = [&](Value v) {
                            if (scale)
                              v = arith::MulFOp::create(b, loc, v, f32Const(b, loc, scale->convertToDouble()));
                            linalg::YieldOp::create(b, loc, v);
                          };
                          if (!table->isPacked()) {
                            Value v = tensor::ExtractOp::create(b, loc, table->tensor, ValueRange{row, col});
                            yield(toF32(b, loc, v));
                            return;
                          }
                          // A quantized table: the row's codes and its groups' scales.
                          Value byte = table->nibbles
                                           ? arith::AddIOp::create(
                                                 b, loc,
                                                 arith::MulIOp::create(
                                                     b, loc, arith::DivUIOp::create(b, loc, col, indexConst(b, loc, 32)),
                                                     indexConst(b, loc, 16)),
                                                 arith::RemUIOp::create(b, loc, col, indexConst(b, loc, 16)))
                                                 .getResult()
                                           : col;
                          Value code = tensor::ExtractOp::create(b, loc, table->data, ValueRange{row, byte});
                          auto [s, o] = table->paramsAt(b, loc, row, col);
                          Value v = decodeCode(b, loc, *table, code, col);
                          yield(WeightOperand::dequantized(b, loc, v, s, o));
                        });
    b.replaceOp(op, out);
    return success();
  }
};

/// An element-wise generic over `operands` (all of the result's shape).
Value elementwise(OpBuilder &b, Location loc, ValueRange operands, BodyFn body) {
  auto type = cast<RankedTensorType>(operands[0].getType());
  unsigned rank = type.getRank();
  SmallVector<SmallVector<AffineExpr>> maps(operands.size() + 1, dims(b, rank));
  return generic(b, loc, operands,
                 tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, operands[0]),
                                         b.getF32Type()),
                 maps, SmallVector<utils::IteratorType>(rank, par), body);
}

struct LowerActivation : OpRewritePattern<llm::ActivationOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::ActivationOp op, PatternRewriter &b) const override {
    llm::ActivationKind kind = op.getKind();
    b.replaceOp(op, elementwise(b, op.getLoc(), op.getInput(),
                                [&](OpBuilder &b, Location loc, ValueRange a) {
                                  linalg::YieldOp::create(b, loc, activation(b, loc, kind, a[0]));
                                }));
    return success();
  }
};

struct LowerGLU : OpRewritePattern<llm::GLUOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::GLUOp op, PatternRewriter &b) const override {
    llm::ActivationKind kind = op.getActivation();
    b.replaceOp(op, elementwise(b, op.getLoc(), ValueRange{op.getGate(), op.getUp()},
                                [&](OpBuilder &b, Location loc, ValueRange a) {
                                  Value g = activation(b, loc, kind, a[0]);
                                  linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, g, a[1]).getResult());
                                }));
    return success();
  }
};

struct LowerXIELU : OpRewritePattern<llm::XIELUOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::XIELUOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    auto scalar = [&](Value v) -> Value {
      auto type = cast<RankedTensorType>(v.getType());
      SmallVector<Value> zeros(type.getRank(), indexConst(b, loc, 0));
      return toF32(b, loc, tensor::ExtractOp::create(b, loc, v, zeros));
    };
    auto softplus = [&](Value v) -> Value {
      // torch's softplus: log1p(exp(v)), and v itself above 20.
      Value sp = math::Log1pOp::create(b, loc, math::ExpOp::create(b, loc, v));
      Value big = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, v, f32Const(b, loc, 20.0));
      return arith::SelectOp::create(b, loc, big, v, sp);
    };
    Value beta = f32Const(b, loc, op.getBeta().convertToDouble());
    Value eps = f32Const(b, loc, op.getEps().convertToDouble());
    Value ap = softplus(scalar(op.getAlphaP()));
    Value an = arith::AddFOp::create(b, loc, beta, softplus(scalar(op.getAlphaN())));
    b.replaceOp(op, elementwise(b, loc, op.getInput(), [&](OpBuilder &b, Location loc, ValueRange a) {
      Value x = a[0];
      Value bx = arith::MulFOp::create(b, loc, beta, x);
      Value pos = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, ap, arith::MulFOp::create(b, loc, x, x)), bx);
      Value m = arith::MinimumFOp::create(b, loc, x, eps);
      Value neg = arith::AddFOp::create(
          b, loc, arith::MulFOp::create(b, loc, arith::SubFOp::create(b, loc, math::ExpM1Op::create(b, loc, m), x), an), bx);
      Value gt = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, f32Const(b, loc, 0.0));
      linalg::YieldOp::create(b, loc, arith::SelectOp::create(b, loc, gt, pos, neg).getResult());
    }));
    return success();
  }
};

struct LowerRope : OpRewritePattern<llm::RopeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::RopeOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    llm::RopeAttr rope = op.getRope();
    RopeTables tables = computeRopeTables(rope);
    int64_t dim = rope.getDim(), half = dim / 2;
    bool interleaved = rope.getInterleaved();
    Value x = op.getInput();
    auto xType = cast<RankedTensorType>(x.getType());
    auto freqType = RankedTensorType::get({half}, b.getF32Type());
    Value freqs = arith::ConstantOp::create(
        b, loc, freqType, DenseElementsAttr::get(freqType, ArrayRef<float>(tables.invFreq)));
    float factor = static_cast<float>(tables.attentionFactor);
    AffineExpr t = b.getAffineDimExpr(0), i = b.getAffineDimExpr(1);
    // cos and sin of each token's angles, [tokens, half], times the
    // attention factor: once per position, not once per head and element
    // (a libm call each: 5% of a Mixtral-shaped prefill, serial).
    Value tokens = tensor::DimOp::create(b, loc, x, 0);
    auto table = [&](bool cosine) {
      return markParallel(generic(
          b, loc, ValueRange{op.getPositions()},
          tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{tokens, b.getIndexAttr(half)},
                                  b.getF32Type()),
          {{t}, {t, i}}, {par, par}, [&](OpBuilder &b, Location loc, ValueRange a) {
            Value f = tensor::ExtractOp::create(b, loc, freqs, ValueRange{linalg::IndexOp::create(b, loc, 1)});
            Value angle = arith::MulFOp::create(b, loc, arith::SIToFPOp::create(b, loc, b.getF32Type(), a[0]), f);
            Value v = cosine ? math::CosOp::create(b, loc, angle).getResult()
                             : math::SinOp::create(b, loc, angle).getResult();
            linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, v, f32Const(b, loc, factor)).getResult());
          }));
    };
    Value cosT = table(true), sinT = table(false);
    // The heads' elements as one dimension, so that the work items are
    // tokens (a decode step's one token is no fork).
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
    Value headDim = getValueOrCreateConstantIndexOp(b, loc, sizes[2]);
    Value rows = tensor::CollapseShapeOp::create(b, loc, x, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
    Value flatOut = markParallel(generic(
        b, loc, ValueRange{rows},
        tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, rows), b.getF32Type()),
        {{t, i}, {t, i}}, {par, par}, [&](OpBuilder &b, Location loc, ValueRange a) {
          Value ti = linalg::IndexOp::create(b, loc, 0), j = linalg::IndexOp::create(b, loc, 1);
          Value hi = arith::DivUIOp::create(b, loc, j, headDim);
          Value di = arith::RemUIOp::create(b, loc, j, headDim);
          Value cHalf = indexConst(b, loc, half), cDim = indexConst(b, loc, dim);
          Value inRot = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, di, cDim);
          // Frequency index, partner element and the sign of its term.
          Value freqIdx, partner, firstOfPair;
          if (interleaved) {
            freqIdx = arith::DivUIOp::create(b, loc, di, indexConst(b, loc, 2));
            partner = arith::XOrIOp::create(b, loc, di, indexConst(b, loc, 1));
            Value odd = arith::AndIOp::create(b, loc, di, indexConst(b, loc, 1));
            firstOfPair = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, odd, indexConst(b, loc, 0));
          } else {
            firstOfPair = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, di, cHalf);
            Value lower = arith::SubIOp::create(b, loc, di, cHalf);
            freqIdx = arith::SelectOp::create(b, loc, firstOfPair, di, lower);
            partner = arith::SelectOp::create(b, loc, firstOfPair,
                                              arith::AddIOp::create(b, loc, di, cHalf), lower);
          }
          // Outside the rotated dimensions these indices are unused; keep
          // them in range.
          freqIdx = arith::SelectOp::create(b, loc, inRot, freqIdx, indexConst(b, loc, 0));
          partner = arith::SelectOp::create(b, loc, inRot, partner, di);
          Value cs = tensor::ExtractOp::create(b, loc, cosT, ValueRange{ti, freqIdx});
          Value sn = tensor::ExtractOp::create(b, loc, sinT, ValueRange{ti, freqIdx});
          Value partnerAt = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, hi, headDim), partner);
          Value other = tensor::ExtractOp::create(b, loc, rows, ValueRange{ti, partnerAt});
          Value signedOther = arith::SelectOp::create(b, loc, firstOfPair,
                                                      arith::NegFOp::create(b, loc, other), other);
          Value rotated = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, a[0], cs),
                                                arith::MulFOp::create(b, loc, signedOther, sn));
          linalg::YieldOp::create(b, loc, arith::SelectOp::create(b, loc, inRot, rotated, a[0]).getResult());
        }));
    Value out = tensor::ExpandShapeOp::create(
        b, loc, RankedTensorType::get(xType.getShape(), b.getF32Type()), flatOut,
        ArrayRef<ReassociationIndices>{{0}, {1, 2}}, sizes);
    b.replaceOp(op, tensor::CastOp::create(b, loc, op.getType(), out).getResult());
    return success();
  }
};

struct LowerKVCacheUpdate : OpRewritePattern<llm::KVCacheUpdateOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::KVCacheUpdateOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    auto type = cast<RankedTensorType>(op.getCache().getType());
    int64_t rank = type.getRank();
    SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
    offsets[0] = op.getOffset();
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, op.getUpdate());
    SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
    b.replaceOpWithNewOp<tensor::InsertSliceOp>(op, op.getUpdate(), op.getCache(), offsets,
                                                sizes, strides);
    return success();
  }
};

/// Largest magnitude of a cache format: int8 and FP8 E4M3 (FN: no
/// infinities, 448 = 1.75 * 2^8 the largest finite).
double formatMax(llm::CacheFormat format) {
  return format == llm::CacheFormat::int8 ? 127.0 : 448.0;
}

struct LowerQuantizedCacheUpdate : OpRewritePattern<llm::QuantizedCacheUpdateOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::QuantizedCacheUpdateOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Value x = op.getUpdate();
    auto cacheType = cast<RankedTensorType>(op.getCache().getType());
    Type storage = cacheType.getElementType();
    unsigned rank = cacheType.getRank();
    SmallVector<AffineExpr> all = dims(b, rank), row = dims(b, rank - 1);
    SmallVector<utils::IteratorType> rowIters(rank - 1, par);
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
    SmallVector<OpFoldResult> rowSizes(sizes.begin(), sizes.end() - 1);
    double qmax = formatMax(op.getFormat());
    // scale = max|row| / qmax (1 for a row of zeros: it stores zeros).
    Value absMax = rowAbsMax(b, loc, x);
    Value scales = generic(b, loc, absMax,
                           tensor::EmptyOp::create(b, loc, rowSizes, b.getF32Type()), {row, row},
                           rowIters, [&](OpBuilder &b, Location loc, ValueRange a) {
      Value zero = f32Const(b, loc, 0.0);
      Value isZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, a[0], zero);
      Value scale = arith::DivFOp::create(b, loc, a[0], f32Const(b, loc, qmax));
      linalg::YieldOp::create(b, loc, arith::SelectOp::create(b, loc, isZero, f32Const(b, loc, 1.0),
                                                              scale).getResult());
    });
    bool int8 = op.getFormat() == llm::CacheFormat::int8;
    Value stored = generic(b, loc, ValueRange{x, scales},
                           tensor::EmptyOp::create(b, loc, sizes, storage), {all, row, all},
                           SmallVector<utils::IteratorType>(rank, par),
                           [&](OpBuilder &b, Location loc, ValueRange a) {
      Value v = arith::DivFOp::create(b, loc, toF32(b, loc, a[0]), a[1]);
      // |v| <= qmax up to rounding of the division: clamp, then round.
      Value lim = f32Const(b, loc, qmax);
      v = arith::MinimumFOp::create(b, loc, arith::MaximumFOp::create(b, loc, v,
                                        arith::NegFOp::create(b, loc, lim)), lim);
      Value q = int8 ? arith::FPToSIOp::create(b, loc, storage, math::RoundOp::create(b, loc, v))
                           .getResult()
                     : arith::TruncFOp::create(b, loc, storage, v).getResult();
      linalg::YieldOp::create(b, loc, q);
    });
    auto put = [&](Value value, Value into) {
      auto type = cast<RankedTensorType>(into.getType());
      SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0));
      offsets[0] = op.getOffset();
      SmallVector<OpFoldResult> strides(type.getRank(), b.getIndexAttr(1));
      return tensor::InsertSliceOp::create(b, loc, value, into, offsets,
                                           tensor::getMixedSizes(b, loc, value), strides)
          .getResult();
    };
    b.replaceOp(op, {put(stored, op.getCache()), put(scales, op.getScales())});
    return success();
  }
};

/// A dequantized cache no attention lowering reads fused: storage times
/// row scale, materialized.
struct LowerDequantizeCache : OpRewritePattern<llm::DequantizeCacheOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::DequantizeCacheOp op, PatternRewriter &b) const override {
    if (llvm::any_of(op->getUsers(), [](Operation *user) {
          return isa<llm::AttentionOp>(user) || user->getName().getStringRef() == "mla.attend";
        }))
      return b.notifyMatchFailure(op, "read fused by attention");
    b.replaceOp(op, dequantized(b, op.getLoc(), CacheRows{op.getCache(), op.getScales()}));
    return success();
  }
};

struct LowerAttention : OpRewritePattern<llm::AttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(llm::AttentionOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    auto qType = cast<RankedTensorType>(op.getQuery().getType());
    auto kType = cast<RankedTensorType>(op.getKey().getType());
    auto vType = cast<RankedTensorType>(op.getValue().getType());
    int64_t heads = qType.getDimSize(1), kvHeads = kType.getDimSize(1);
    if (ShapedType::isDynamic(heads) || ShapedType::isDynamic(kvHeads) ||
        ShapedType::isDynamic(kType.getDimSize(0)))
      return b.notifyMatchFailure(op, "needs static heads and cache capacity");
    int64_t group = heads / kvHeads;
    Value len = validLength(b, loc, op.getPositions(), kType.getDimSize(0));
    // A quantized cache is read as stored; its row scales (per token and KV
    // head) factor out of the scores and into the probabilities.
    CacheRows k = readCache(b, loc, op.getKey(), len), v = readCache(b, loc, op.getValue(), len);
    std::optional<int64_t> window;
    if (std::optional<uint64_t> w = op.getSlidingWindow())
      window = static_cast<int64_t>(*w);
    if (op.getFlash()) {
      b.replaceOp(op, tensor::CastOp::create(
                          b, loc, op.getType(),
                          flashAttention(b, loc, {{op.getQuery()}, {k}, v, op.getPositions(), len,
                                                  op.getScale().convertToDouble(), window,
                                                  attrs::getLoweringConfig(op)}))
                          .getResult());
      return success();
    }
    AffineExpr t = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1), s = b.getAffineDimExpr(2),
               d = b.getAffineDimExpr(3);
    Value tokens = tensor::DimOp::create(b, loc, op.getQuery(), 0);
    SmallVector<OpFoldResult> scoreSizes = {tokens, b.getIndexAttr(heads), len};
    Value scores = markParallel(generic(b, loc, ValueRange{op.getQuery(), k.values},
                           filled(b, loc, scoreSizes, b.getF32Type(), 0.0),
                           {{t, h, d}, {s, h.floorDiv(group), d}, {t, h, s}}, {par, par, par, red},
                           multiplyAccumulate));
    scores = scaleBy(b, loc, scores, k.scales, {s, h.floorDiv(group)});
    Value probs = scaleBy(b, loc,
                          maskedSoftmax(b, loc, scores, op.getPositions(),
                                        op.getScale().convertToDouble(), window),
                          v.scales, {s, h.floorDiv(group)});
    SmallVector<OpFoldResult> outSizes = {tokens, b.getIndexAttr(heads),
                                          b.getIndexAttr(vType.getDimSize(2))};
    // Loops (t, h, s, dv): the innermost runs along a cache row, contiguous
    // and vectorizable, instead of striding down the cache per element.
    AffineExpr s2 = b.getAffineDimExpr(2), dv = b.getAffineDimExpr(3);
    Value out = markParallel(generic(b, loc, ValueRange{probs, v.values},
                                     filled(b, loc, outSizes, b.getF32Type(), 0.0),
                                     {{t, h, s2}, {s2, h.floorDiv(group), dv}, {t, h, dv}},
                                     {par, par, red, par}, multiplyAccumulate));
    b.replaceOp(op, out);
    return success();
  }
};

} // namespace

RopeTables moir::computeRopeTables(llm::RopeAttr rope) {
  RopeTables tables;
  int64_t dim = rope.getDim();
  double theta = rope.getTheta().getValueAsDouble();
  auto value = [](FloatAttr a, double fallback) {
    return a ? a.getValueAsDouble() : fallback;
  };
  double factor = value(rope.getFactor(), 1.0);
  for (int64_t i = 0; i < dim / 2; ++i) {
    // torch computes base ** (2i / dim) in float32.
    float posFreq = std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / dim);
    double inv = 1.0 / posFreq;
    switch (rope.getScaling()) {
    case llm::RopeScaling::none:
      break;
    case llm::RopeScaling::linear:
      inv /= factor;
      break;
    case llm::RopeScaling::llama3: {
      double low = value(rope.getLowFreqFactor(), 1.0), high = value(rope.getHighFreqFactor(), 4.0);
      double orig = static_cast<double>(rope.getOriginalMaxPosition());
      double wavelen = 2 * M_PI / inv;
      double lowWavelen = orig / low, highWavelen = orig / high;
      double scaled = wavelen > lowWavelen ? inv / factor : inv;
      if (!(wavelen < highWavelen) && !(wavelen > lowWavelen)) {
        double smooth = (orig / wavelen - low) / (high - low);
        scaled = (1 - smooth) * scaled / factor + smooth * scaled;
      }
      inv = scaled;
      break;
    }
    case llm::RopeScaling::yarn: {
      double betaFast = value(rope.getBetaFast(), 32.0), betaSlow = value(rope.getBetaSlow(), 1.0);
      double orig = static_cast<double>(rope.getOriginalMaxPosition());
      auto correctionDim = [&](double rotations) {
        return dim * std::log(orig / (rotations * 2 * M_PI)) / (2 * std::log(theta));
      };
      double lo = std::max(std::floor(correctionDim(betaFast)), 0.0);
      double hi = std::min(std::ceil(correctionDim(betaSlow)), static_cast<double>(dim - 1));
      if (lo == hi)
        hi += 0.001;
      double ramp = std::clamp((static_cast<double>(i) - lo) / (hi - lo), 0.0, 1.0);
      double extrapolation = 1 - ramp;
      double interpolation = 1.0 / (factor * posFreq);
      inv = interpolation * (1 - extrapolation) + inv * extrapolation;
      break;
    }
    }
    // llama.cpp's per-frequency divisors (its form of llama3 scaling).
    if (DenseF64ArrayAttr factors = rope.getFreqFactors())
      inv /= factors[i];
    tables.invFreq.push_back(static_cast<float>(inv));
  }
  if (rope.getScaling() == llm::RopeScaling::yarn) {
    auto mscale = [&](double m) { return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; };
    double m = value(rope.getMscale(), 0.0), mAll = value(rope.getMscaleAllDim(), 0.0);
    tables.attentionFactor = (m != 0.0 && mAll != 0.0) ? mscale(m) / mscale(mAll) : mscale(1.0);
  }
  return tables;
}

void moir::lowering::populateLLMToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerDequantize, LowerRMSNorm, LowerLinear, LowerPermute, LowerDynamicQuant, LowerStaticQuant, LowerEmbedding, LowerActivation, LowerGLU,
               LowerXIELU, LowerRope, LowerKVCacheUpdate, LowerAttention,
               LowerQuantizedCacheUpdate, LowerDequantizeCache>(
      patterns.getContext());
}
