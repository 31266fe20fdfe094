//===- MoEToLinalg.cpp - moe ops to scf loops and linalg on tensors --------===//
//
// Routing and dispatch are data-dependent, so they become scf.for loops over
// tokens and experts carrying tensors; the expert FFN is a loop over experts
// whose body is dense linalg on that expert's rows.
//
//===----------------------------------------------------------------------===//

#include "Builders.h"
#include "Patterns.h"

#include "MoE/IR/MoEOps.h"

#include "mlir/IR/PatternMatch.h"

#include <limits>

using namespace mlir;
using namespace moir;
using namespace moir::lowering;

namespace {


using LoopBody = function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)>;

/// scf.for iv in [lb, ub) carrying `inits`; the body returns the new values.
SmallVector<Value> loop(OpBuilder &b, Location loc, Value lb, Value ub, ValueRange inits,
                        LoopBody body) {
  auto op = scf::ForOp::create(
      b, loc, lb, ub, indexConst(b, loc, 1), inits,
      [&](OpBuilder &b, Location loc, Value iv, ValueRange args) {
        scf::YieldOp::create(b, loc, body(b, loc, iv, args));
      });
  return SmallVector<Value>(op.getResults());
}

Value extract(OpBuilder &b, Location loc, Value t, ValueRange idx) {
  return tensor::ExtractOp::create(b, loc, t, idx);
}
Value insert(OpBuilder &b, Location loc, Value v, Value t, ValueRange idx) {
  return tensor::InsertOp::create(b, loc, v, t, idx);
}
Value toIndex(OpBuilder &b, Location loc, Value v) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
}
Value toI32(OpBuilder &b, Location loc, Value v) {
  return arith::IndexCastOp::create(b, loc, b.getI32Type(), v);
}

/// The index and value of the largest element of the 1-D tensor `v` among
/// [lb, ub) (first one on ties).
std::pair<Value, Value> argmax(OpBuilder &b, Location loc, Value v, Value lb, Value ub) {
  Value negInf = f32Const(b, loc, -std::numeric_limits<float>::infinity());
  SmallVector<Value> r = loop(b, loc, lb, ub, ValueRange{negInf, lb},
                              [&](OpBuilder &b, Location loc, Value e, ValueRange a) {
                                Value x = extract(b, loc, v, e);
                                Value better = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, a[0]);
                                return SmallVector<Value>{
                                    arith::SelectOp::create(b, loc, better, x, a[0]),
                                    arith::SelectOp::create(b, loc, better, e, a[1])};
                              });
  return {r[1], r[0]};
}

struct LowerRoute : OpRewritePattern<moe::RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::RouteOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    moe::RoutingAttr routing = op.getRouting();
    Value logits = op.getLogits();
    int64_t experts = cast<RankedTensorType>(logits.getType()).getDimSize(1);
    int64_t k = routing.getTopK(), groups = routing.getNGroup(),
            topkGroup = routing.getTopkGroup(), perGroup = experts / groups;
    bool grouped = routing.getMethod() != moe::TopkMethod::greedy && groups > 1;
    bool sigmoid = routing.getScoring() == moe::Scoring::sigmoid;
    Value tokens = tensor::DimOp::create(b, loc, logits, 0);
    SmallVector<OpFoldResult> outSizes = {tokens, b.getIndexAttr(k)};
    Value weights0 = tensor::EmptyOp::create(b, loc, outSizes, b.getF32Type());
    Value ids0 = tensor::EmptyOp::create(b, loc, outSizes, b.getI32Type());
    Value c0 = indexConst(b, loc, 0), cE = indexConst(b, loc, experts);
    Value negInf = f32Const(b, loc, -std::numeric_limits<float>::infinity());
    auto vecType = RankedTensorType::get({experts}, b.getF32Type());
    AffineExpr e = b.getAffineDimExpr(0);
    Value bias = op.getCorrectionBias();

    SmallVector<Value> results = loop(
        b, loc, c0, tokens, ValueRange{weights0, ids0},
        [&](OpBuilder &b, Location loc, Value t, ValueRange acc) {
          // This token's logits as a [E] tensor.
          Value row = tensor::ExtractSliceOp::create(
              b, loc, vecType, logits, ArrayRef<OpFoldResult>{t, b.getIndexAttr(0)},
              ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(experts)},
              ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
          Value empty = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{experts}, b.getF32Type());
          Value scores;
          if (sigmoid) {
            scores = generic(b, loc, row, empty, {{e}, {e}}, {par},
                             [](OpBuilder &b, Location loc, ValueRange a) {
                               Value one = f32Const(b, loc, 1.0);
                               Value ex = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, a[0]));
                               linalg::YieldOp::create(b, loc, arith::DivFOp::create(
                                   b, loc, one, arith::AddFOp::create(b, loc, one, ex)).getResult());
                             });
          } else {
            Value m = extract(b, loc, generic(b, loc, row,
                                              filled(b, loc, {}, b.getF32Type(), -std::numeric_limits<float>::infinity()),
                                              {{e}, {}}, {red}, [](OpBuilder &b, Location loc, ValueRange a) {
                                                linalg::YieldOp::create(b, loc, arith::MaximumFOp::create(b, loc, a[0], a[1]).getResult());
                                              }), {});
            Value ex = generic(b, loc, row, empty, {{e}, {e}}, {par}, [&](OpBuilder &b, Location loc, ValueRange a) {
              linalg::YieldOp::create(b, loc, math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, a[0], m)).getResult());
            });
            Value sum = extract(b, loc, generic(b, loc, ex, filled(b, loc, {}, b.getF32Type(), 0.0),
                                                {{e}, {}}, {red}, [](OpBuilder &b, Location loc, ValueRange a) {
                                                  linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, a[0], a[1]).getResult());
                                                }), {});
            scores = generic(b, loc, ex, empty, {{e}, {e}}, {par}, [&](OpBuilder &b, Location loc, ValueRange a) {
              linalg::YieldOp::create(b, loc, arith::DivFOp::create(b, loc, a[0], sum).getResult());
            });
          }
          // Selection scores: with the correction bias for noaux_tc.
          Value choice = scores;
          if (bias)
            choice = generic(b, loc, ValueRange{scores, bias}, empty, {{e}, {e}, {e}}, {par},
                             [](OpBuilder &b, Location loc, ValueRange a) {
                               linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, a[0], toF32(b, loc, a[1])).getResult());
                             });
          if (grouped) {
            // Group scores: the best expert (group_limited) or the sum of
            // the two best (noaux_tc).
            bool top2 = routing.getMethod() == moe::TopkMethod::noaux_tc;
            Value gEmpty = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{groups}, b.getF32Type());
            Value gScores = loop(b, loc, c0, indexConst(b, loc, groups), gEmpty,
                                 [&](OpBuilder &b, Location loc, Value g, ValueRange a) {
              Value lo = arith::MulIOp::create(b, loc, g, indexConst(b, loc, perGroup));
              Value hi = arith::AddIOp::create(b, loc, lo, indexConst(b, loc, perGroup));
              auto [best, bestVal] = argmax(b, loc, choice, lo, hi);
              Value score = bestVal;
              if (top2) {
                Value without = insert(b, loc, negInf, choice, best);
                score = arith::AddFOp::create(b, loc, bestVal, argmax(b, loc, without, lo, hi).second);
              }
              return SmallVector<Value>{insert(b, loc, score, a[0], g)};
            })[0];
            // Keep the topk_group best groups; the others' experts get 0,
            // as Hugging Face masks them.
            Value keep0 = filled(b, loc, {b.getIndexAttr(groups)}, b.getF32Type(), 0.0);
            Value keep = loop(b, loc, c0, indexConst(b, loc, topkGroup), ValueRange{gScores, keep0},
                              [&](OpBuilder &b, Location loc, Value, ValueRange a) {
              Value g = argmax(b, loc, a[0], c0, indexConst(b, loc, groups)).first;
              return SmallVector<Value>{insert(b, loc, negInf, a[0], g),
                                        insert(b, loc, f32Const(b, loc, 1.0), a[1], g)};
            })[1];
            choice = generic(b, loc, choice, empty, {{e}, {e}}, {par}, [&](OpBuilder &b, Location loc, ValueRange a) {
              Value g = arith::DivUIOp::create(b, loc, linalg::IndexOp::create(b, loc, 0), indexConst(b, loc, perGroup));
              Value kept = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, extract(b, loc, keep, g), f32Const(b, loc, 0.5));
              linalg::YieldOp::create(b, loc, arith::SelectOp::create(b, loc, kept, a[0], f32Const(b, loc, 0.0)).getResult());
            });
          }
          // Top-k by repeated argmax; weights are the unbiased scores.
          SmallVector<Value> picked = loop(
              b, loc, c0, indexConst(b, loc, k), ValueRange{choice, acc[0], acc[1], f32Const(b, loc, 0.0)},
              [&](OpBuilder &b, Location loc, Value j, ValueRange a) {
                Value best = argmax(b, loc, a[0], c0, cE).first;
                Value w = extract(b, loc, scores, best);
                return SmallVector<Value>{insert(b, loc, negInf, a[0], best),
                                          insert(b, loc, w, a[1], ValueRange{t, j}),
                                          insert(b, loc, toI32(b, loc, best), a[2], ValueRange{t, j}),
                                          arith::AddFOp::create(b, loc, a[3], w)};
              });
          Value scale = f32Const(b, loc, routing.getScalingFactor());
          Value factor = routing.getNormTopkProb()
                             ? arith::DivFOp::create(b, loc, scale, picked[3]).getResult()
                             : scale;
          Value w = loop(b, loc, c0, indexConst(b, loc, k), picked[1],
                         [&](OpBuilder &b, Location loc, Value j, ValueRange a) {
            Value v = arith::MulFOp::create(b, loc, extract(b, loc, a[0], ValueRange{t, j}), factor);
            return SmallVector<Value>{insert(b, loc, v, a[0], ValueRange{t, j})};
          })[0];
          return SmallVector<Value>{w, picked[2]};
        });
    b.replaceOp(op, results);
    return success();
  }
};

struct LowerDispatch : OpRewritePattern<moe::DispatchOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::DispatchOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Value ids = op.getIds(), x = op.getInput();
    int64_t experts = op.getNumExperts();
    int64_t k = cast<RankedTensorType>(ids.getType()).getDimSize(1);
    Value c0 = indexConst(b, loc, 0), cK = indexConst(b, loc, k);
    Value tokens = tensor::DimOp::create(b, loc, ids, 0);
    Value copies = arith::MulIOp::create(b, loc, tokens, cK);
    Value zero32 = arith::ConstantOp::create(b, loc, b.getI32Type(), b.getI32IntegerAttr(0));
    Value one32 = arith::ConstantOp::create(b, loc, b.getI32Type(), b.getI32IntegerAttr(1));
    auto i32Vec = [&](int64_t n) {
      Value t = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{n}, b.getI32Type());
      return linalg::FillOp::create(b, loc, ValueRange{zero32}, ValueRange{t}).getResult(0);
    };
    // Count copies per expert (flat index r = t * k + slot).
    Value counts = loop(b, loc, c0, copies, i32Vec(experts),
                        [&](OpBuilder &b, Location loc, Value r, ValueRange a) {
      Value t = arith::DivUIOp::create(b, loc, r, cK), j = arith::RemUIOp::create(b, loc, r, cK);
      Value e = toIndex(b, loc, extract(b, loc, ids, ValueRange{t, j}));
      Value c = arith::AddIOp::create(b, loc, extract(b, loc, a[0], e), one32);
      return SmallVector<Value>{insert(b, loc, c, a[0], e)};
    })[0];
    Value offsets = loop(b, loc, c0, indexConst(b, loc, experts), i32Vec(experts + 1),
                         [&](OpBuilder &b, Location loc, Value e, ValueRange a) {
      Value next = arith::AddIOp::create(b, loc, e, indexConst(b, loc, 1));
      Value v = arith::AddIOp::create(b, loc, extract(b, loc, a[0], e), extract(b, loc, counts, e));
      return SmallVector<Value>{insert(b, loc, v, a[0], next)};
    })[0];
    // Place copies in token order within each expert.
    Value cursor0 = tensor::ExtractSliceOp::create(
        b, loc, RankedTensorType::get({experts}, b.getI32Type()), offsets,
        ArrayRef<OpFoldResult>{b.getIndexAttr(0)}, ArrayRef<OpFoldResult>{b.getIndexAttr(experts)},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
    Value sources0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{copies}, b.getI32Type());
    Value sources = loop(b, loc, c0, copies, ValueRange{cursor0, sources0},
                         [&](OpBuilder &b, Location loc, Value r, ValueRange a) {
      Value t = arith::DivUIOp::create(b, loc, r, cK), j = arith::RemUIOp::create(b, loc, r, cK);
      Value e = toIndex(b, loc, extract(b, loc, ids, ValueRange{t, j}));
      Value slot = extract(b, loc, a[0], e);
      Value cursor = insert(b, loc, arith::AddIOp::create(b, loc, slot, one32), a[0], e);
      return SmallVector<Value>{cursor, insert(b, loc, toI32(b, loc, r), a[1], toIndex(b, loc, slot))};
    })[1];
    auto xType = cast<RankedTensorType>(x.getType());
    int64_t hidden = xType.getDimSize(1);
    AffineExpr rr = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1);
    Value rows = generic(b, loc, sources,
                         tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{copies, b.getIndexAttr(hidden)},
                                                 xType.getElementType()),
                         {{rr}, {rr, h}}, {par, par}, [&](OpBuilder &b, Location loc, ValueRange a) {
                           Value t = arith::DivUIOp::create(b, loc, toIndex(b, loc, a[0]), cK);
                           linalg::YieldOp::create(b, loc, extract(b, loc, x, ValueRange{t, linalg::IndexOp::create(b, loc, 1)}));
                         });
    b.replaceOp(op, {tensor::CastOp::create(b, loc, op.getRows().getType(), rows).getResult(),
                     offsets,
                     tensor::CastOp::create(b, loc, op.getSources().getType(), sources).getResult()});
    return success();
  }
};

/// rows [n, in] x w[e] ([out, in] slice of a stacked [E, out, in] weight).
Value expertMatmul(OpBuilder &b, Location loc, Value rows, Value stacked, Value e) {
  auto wType = cast<RankedTensorType>(stacked.getType());
  int64_t out = wType.getDimSize(1), in = wType.getDimSize(2);
  Value w = tensor::ExtractSliceOp::create(
      b, loc, RankedTensorType::get({out, in}, wType.getElementType()), stacked,
      ArrayRef<OpFoldResult>{e, b.getIndexAttr(0), b.getIndexAttr(0)},
      ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(out), b.getIndexAttr(in)},
      ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1), b.getIndexAttr(1)});
  AffineExpr m = b.getAffineDimExpr(0), n = b.getAffineDimExpr(1), k = b.getAffineDimExpr(2);
  SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, rows, 0), b.getIndexAttr(out)};
  return markParallel(generic(b, loc, ValueRange{rows, w}, filled(b, loc, sizes, b.getF32Type(), 0.0),
                              {{m, k}, {n, k}, {m, n}}, {par, par, red}, multiplyAccumulate));
}

struct LowerExpertFFN : OpRewritePattern<moe::ExpertFFNOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::ExpertFFNOp op, PatternRewriter &b) const override {
    for (Value w : {op.getGate(), op.getUp(), op.getDown()})
      if (isa<llm::QTensorType>(w.getType()))
        return b.notifyMatchFailure(op, "quantized weights are not lowered yet");
    if (op.getActivation() != llm::ActivationKind::silu)
      return b.notifyMatchFailure(op, "only SiLU experts are lowered");
    Location loc = op.getLoc();
    Value rows = op.getRows(), offsets = op.getOffsets();
    auto rowsType = cast<RankedTensorType>(rows.getType());
    int64_t hidden = rowsType.getDimSize(1);
    int64_t experts = cast<RankedTensorType>(offsets.getType()).getDimSize(0) - 1;
    Value c0 = indexConst(b, loc, 0);
    SmallVector<OpFoldResult> outSizes = tensor::getMixedSizes(b, loc, rows);
    Value out0 = filled(b, loc, outSizes, b.getF32Type(), 0.0);
    Value out = loop(b, loc, c0, indexConst(b, loc, experts), out0,
                     [&](OpBuilder &b, Location loc, Value e, ValueRange a) {
      Value lo = toIndex(b, loc, extract(b, loc, offsets, e));
      Value hi = toIndex(b, loc, extract(b, loc, offsets, arith::AddIOp::create(b, loc, e, indexConst(b, loc, 1)).getResult()));
      Value n = arith::SubIOp::create(b, loc, hi, lo);
      // Experts no token chose (most of them at decode) cost nothing.
      Value any = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, n, indexConst(b, loc, 0));
      auto branch = scf::IfOp::create(
          b, loc, any,
          [&](OpBuilder &b, Location loc) {
            auto dynRows = RankedTensorType::get({ShapedType::kDynamic, hidden}, b.getF32Type());
            Value xs = tensor::ExtractSliceOp::create(
                b, loc, dynRows, rows, ArrayRef<OpFoldResult>{lo, b.getIndexAttr(0)},
                ArrayRef<OpFoldResult>{n, b.getIndexAttr(hidden)},
                ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
            Value g = expertMatmul(b, loc, xs, op.getGate(), e);
            Value u = expertMatmul(b, loc, xs, op.getUp(), e);
            unsigned rank = 2;
            AffineExpr i = b.getAffineDimExpr(0), j = b.getAffineDimExpr(1);
            Value hAct = generic(b, loc, ValueRange{g, u},
                                 tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, g), b.getF32Type()),
                                 {{i, j}, {i, j}, {i, j}}, SmallVector<utils::IteratorType>(rank, par),
                                 [](OpBuilder &b, Location loc, ValueRange a) {
                                   Value one = f32Const(b, loc, 1.0);
                                   Value ex = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, a[0]));
                                   Value silu = arith::DivFOp::create(b, loc, a[0], arith::AddFOp::create(b, loc, one, ex));
                                   linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, silu, a[1]).getResult());
                                 });
            Value y = expertMatmul(b, loc, hAct, op.getDown(), e);
            Value updated = tensor::InsertSliceOp::create(
                b, loc, y, a[0], ArrayRef<OpFoldResult>{lo, b.getIndexAttr(0)},
                ArrayRef<OpFoldResult>{n, b.getIndexAttr(hidden)},
                ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
            scf::YieldOp::create(b, loc, updated);
          },
          [&](OpBuilder &b, Location loc) { scf::YieldOp::create(b, loc, a[0]); });
      Value updated = branch.getResult(0);
      return SmallVector<Value>{updated};
    })[0];
    b.replaceOp(op, out);
    return success();
  }
};

struct LowerCombine : OpRewritePattern<moe::CombineOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::CombineOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Value rows = op.getRows(), sources = op.getSources(), weights = op.getWeights();
    int64_t k = cast<RankedTensorType>(weights.getType()).getDimSize(1);
    int64_t hidden = cast<RankedTensorType>(rows.getType()).getDimSize(1);
    Value c0 = indexConst(b, loc, 0);
    Value copies = tensor::DimOp::create(b, loc, sources, 0);
    // inverse[t * k + slot] = row holding that copy.
    Value inverse0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{copies}, b.getIndexType());
    Value inverse = loop(b, loc, c0, copies, inverse0, [&](OpBuilder &b, Location loc, Value r, ValueRange a) {
      return SmallVector<Value>{insert(b, loc, r, a[0], toIndex(b, loc, extract(b, loc, sources, r)))};
    })[0];
    Value tokens = tensor::DimOp::create(b, loc, weights, 0);
    AffineExpr t = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1), j = b.getAffineDimExpr(2);
    Value out = generic(b, loc, weights,
                        filled(b, loc, {tokens, b.getIndexAttr(hidden)}, b.getF32Type(), 0.0),
                        {{t, j}, {t, h}}, {par, par, red}, [&](OpBuilder &b, Location loc, ValueRange a) {
                          Value ti = linalg::IndexOp::create(b, loc, 0), hi = linalg::IndexOp::create(b, loc, 1),
                                ji = linalg::IndexOp::create(b, loc, 2);
                          Value flat = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, ti, indexConst(b, loc, k)), ji);
                          Value r = extract(b, loc, inverse, flat);
                          Value v = extract(b, loc, rows, ValueRange{r, hi});
                          Value p = arith::MulFOp::create(b, loc, a[0], v);
                          linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, a[1], p).getResult());
                        });
    b.replaceOp(op, tensor::CastOp::create(b, loc, op.getType(), out).getResult());
    return success();
  }
};

} // namespace

void moir::lowering::populateMoEToLinalgPatterns(RewritePatternSet &patterns) {
  patterns.add<LowerRoute, LowerDispatch, LowerExpertFFN, LowerCombine>(patterns.getContext());
}
