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

/// The routing of one token: its logits `row` ([experts] f32) to its top-k
/// weights ([k] f32) and expert ids ([k] i32), as `routing` describes.
std::pair<Value, Value> routeToken(OpBuilder &b, Location loc, moe::RoutingAttr routing, Value row,
                                   Value bias, int64_t experts) {
  int64_t k = routing.getTopK(), groups = routing.getNGroup(),
          topkGroup = routing.getTopkGroup(), perGroup = experts / groups;
  bool grouped = routing.getMethod() != moe::TopkMethod::greedy && groups > 1;
  bool sigmoid = routing.getScoring() == moe::Scoring::sigmoid;
  Value c0 = indexConst(b, loc, 0), cE = indexConst(b, loc, experts);
  Value negInf = f32Const(b, loc, -std::numeric_limits<float>::infinity());
  AffineExpr e = b.getAffineDimExpr(0);
  Value empty = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{experts}, b.getF32Type());
  Value scores;
  if (sigmoid) {
    scores = generic(b, loc, row, empty, {{e}, {e}}, {par},
                     [](OpBuilder &b, Location loc, ValueRange a) {
                       linalg::YieldOp::create(
                           b, loc, activation(b, loc, llm::ActivationKind::sigmoid, a[0]));
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
  Value w0 = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{k}, b.getF32Type());
  Value ids0 = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{k}, b.getI32Type());
  SmallVector<Value> picked = loop(
      b, loc, c0, indexConst(b, loc, k), ValueRange{choice, w0, ids0, f32Const(b, loc, 0.0)},
      [&](OpBuilder &b, Location loc, Value j, ValueRange a) {
        Value best = argmax(b, loc, a[0], c0, cE).first;
        Value w = extract(b, loc, scores, best);
        return SmallVector<Value>{insert(b, loc, negInf, a[0], best), insert(b, loc, w, a[1], j),
                                  insert(b, loc, toI32(b, loc, best), a[2], j),
                                  arith::AddFOp::create(b, loc, a[3], w)};
      });
  Value scale = f32Const(b, loc, routing.getScalingFactor());
  Value factor = routing.getNormTopkProb()
                     ? arith::DivFOp::create(b, loc, scale, picked[3]).getResult()
                     : scale;
  Value weights = generic(b, loc, picked[1], tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{k}, b.getF32Type()),
                          {{e}, {e}}, {par}, [&](OpBuilder &b, Location loc, ValueRange a) {
    linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, a[0], factor).getResult());
  });
  return {weights, picked[2]};
}

/// Writes a token's routing (1-D weights and ids) into row `t` of the
/// [tokens, k] results.
std::pair<Value, Value> insertRow(OpBuilder &b, Location loc, std::pair<Value, Value> row,
                                  Value weights, Value ids, Value t, int64_t k) {
  auto put = [&](Value v, Value into) {
    return tensor::InsertSliceOp::create(
               b, loc, v, into, ArrayRef<OpFoldResult>{t, b.getIndexAttr(0)},
               ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(k)},
               ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)})
        .getResult();
  };
  // A rank-reducing insert: [k] into a [1, k] slice.
  return {put(row.first, weights), put(row.second, ids)};
}

struct LowerRoute : OpRewritePattern<moe::RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::RouteOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    moe::RoutingAttr routing = op.getRouting();
    Value logits = op.getLogits();
    int64_t experts = cast<RankedTensorType>(logits.getType()).getDimSize(1);
    int64_t k = routing.getTopK();
    Value tokens = tensor::DimOp::create(b, loc, logits, 0);
    SmallVector<OpFoldResult> outSizes = {tokens, b.getIndexAttr(k)};
    Value weights0 = tensor::EmptyOp::create(b, loc, outSizes, b.getF32Type());
    Value ids0 = tensor::EmptyOp::create(b, loc, outSizes, b.getI32Type());
    auto vecType = RankedTensorType::get({experts}, b.getF32Type());
    // The tokens are routed independently: one work item each (a thread
    // each on a GPU, where the serial loop this was ran as a one-thread
    // kernel), each with its own temporaries.
    auto forall = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{tokens},
                                        ValueRange{weights0, ids0}, std::nullopt);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(forall.getBody());
      Value t = forall.getInductionVars()[0];
      // This token's logits as a [E] tensor.
      Value row = tensor::ExtractSliceOp::create(
          b, loc, vecType, logits, ArrayRef<OpFoldResult>{t, b.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(experts)},
          ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
      auto [w, ids] = routeToken(b, loc, routing, row, op.getCorrectionBias(), experts);
      SmallVector<Value> routed = {w, ids};
      b.setInsertionPointToStart(forall.getTerminator().getBody());
      // Rank-reducing: each [k] result into row t of the [tokens, k] outputs.
      for (auto [value, out] : llvm::zip(routed, forall.getRegionIterArgs()))
        tensor::ParallelInsertSliceOp::create(
            b, loc, value, out, ArrayRef<OpFoldResult>{t, b.getIndexAttr(0)},
            ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(k)},
            ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    }
    b.replaceOp(op, forall.getResults());
    return success();
  }
};

/// moe.dispatch's computation: token copies grouped by expert (rows
/// [copies, hidden]), the experts' first rows (offsets [experts + 1]) and each
/// row's flat copy index t * k + slot (sources [copies]). With
/// `gatheredSlots` < k, only the copies of the first `gatheredSlots` slots of
/// each token are gathered into rows (the rows of the other slots' experts,
/// which must sort last, are left out: every token selects them, so their
/// rows are the input itself). With `order` ([experts, hidden] i32, the
/// act-order input order of moe.fused_experts), a copy for expert `e` is
/// gathered as `x[t, order[e, h]]`: the dispatch's copy does the gather.
struct Dispatched {
  Value rows, offsets, sources;
};
Dispatched buildDispatch(OpBuilder &b, Location loc, Value x, Value ids, int64_t experts,
                         std::optional<int64_t> gatheredSlots = std::nullopt,
                         Value order = nullptr) {
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
  // Without an input, only the order (moe.combine_rows).
  if (!x)
    return {Value(), offsets, sources};
  auto xType = cast<RankedTensorType>(x.getType());
  int64_t hidden = xType.getDimSize(1);
  AffineExpr rr = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1);
  Value gathered = sources;
  if (gatheredSlots) {
    Value count = arith::MulIOp::create(b, loc, tokens, indexConst(b, loc, *gatheredSlots));
    gathered = tensor::ExtractSliceOp::create(
        b, loc, RankedTensorType::get({ShapedType::kDynamic}, b.getI32Type()), sources,
        ArrayRef<OpFoldResult>{b.getIndexAttr(0)}, ArrayRef<OpFoldResult>{count},
        ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
  }
  // A copy of hidden-size rows: split across cores, rows as work items.
  Value rows = markParallel(generic(
      b, loc, gathered,
      tensor::EmptyOp::create(b, loc,
                              ArrayRef<OpFoldResult>{tensor::getMixedSize(b, loc, gathered, 0),
                                                     b.getIndexAttr(hidden)},
                              xType.getElementType()),
      {{rr}, {rr, h}}, {par, par}, [&](OpBuilder &b, Location loc, ValueRange a) {
        Value src = toIndex(b, loc, a[0]);
        Value t = arith::DivUIOp::create(b, loc, src, cK);
        Value col = linalg::IndexOp::create(b, loc, 1);
        if (order) {
          Value e = toIndex(b, loc, extract(b, loc, ids, ValueRange{t, arith::RemUIOp::create(b, loc, src, cK)}));
          col = toIndex(b, loc, extract(b, loc, order, ValueRange{e, col}));
        }
        linalg::YieldOp::create(b, loc, extract(b, loc, x, ValueRange{t, col}));
      }));
  return {rows, offsets, sources};
}

struct LowerDispatch : OpRewritePattern<moe::DispatchOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::DispatchOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Dispatched d = buildDispatch(b, loc, op.getInput(), op.getIds(), op.getNumExperts());
    b.replaceOp(op, {tensor::CastOp::create(b, loc, op.getRows().getType(), d.rows).getResult(),
                     d.offsets,
                     tensor::CastOp::create(b, loc, op.getSources().getType(), d.sources).getResult()});
    return success();
  }
};

/// rows [n, in] x w[e] ([out, in] slice of a stacked [E, out, in] weight).
Value expertMatmul(OpBuilder &b, Location loc, Value rows, const WeightOperand &stacked, Value e,
                   bool precise = false) {
  SmallVector<int64_t> shape = stacked.getShape();
  int64_t out = shape[1], in = shape[2];
  WeightOperand w = stacked.slice(
      b, loc, {e, b.getIndexAttr(0), b.getIndexAttr(0)},
      {b.getIndexAttr(1), b.getIndexAttr(out), b.getIndexAttr(in)}, /*dropped=*/{0});
  SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, rows, 0), b.getIndexAttr(out)};
  Value product =
      markParallel(weightContraction(b, loc, rows, w, filled(b, loc, sizes, b.getF32Type(), 0.0)));
  if (precise)
    attrs::mark(product.getDefiningOp(), attrs::preciseName());
  return product;
}

struct LowerExpertFFN : OpRewritePattern<moe::ExpertFFNOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::ExpertFFNOp op, PatternRewriter &b) const override {
    FailureOr<WeightOperand> gate = weightOperand(op, op.getGate()),
                             up = weightOperand(op, op.getUp()),
                             down = weightOperand(op, op.getDown());
    if (failed(gate) || failed(up) || failed(down))
      return failure();
    if (op.getActivation() != llm::ActivationKind::silu)
      return b.notifyMatchFailure(op, "only SiLU experts are lowered");
    Location loc = op.getLoc();
    Value rows = op.getRows(), offsets = op.getOffsets();
    std::optional<llm::DynamicQuant> quant = op.getActivationQuant();
    // W8A8: gate and up read the rows quantized (each row on its own).
    if (quant)
      rows = dynamicQuantRows(b, loc, rows, *quant, /*parallel=*/true);
    bool exactRows = keepsActivations(quant);
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
            // Act-order experts: gate and up read the rows in their order.
            if (Value order = op.getInputOrder())
              xs = gatherInner(b, loc, xs, order, ValueRange{e});
            Value g = expertMatmul(b, loc, xs, *gate, e, exactRows);
            Value u = expertMatmul(b, loc, xs, *up, e, exactRows);
            unsigned rank = 2;
            AffineExpr i = b.getAffineDimExpr(0), j = b.getAffineDimExpr(1);
            Value hAct = generic(b, loc, ValueRange{g, u},
                                 tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, g), b.getF32Type()),
                                 {{i, j}, {i, j}, {i, j}}, SmallVector<utils::IteratorType>(rank, par),
                                 [&](OpBuilder &b, Location loc, ValueRange a) {
                                   Value act = activation(b, loc, op.getActivation(), a[0]);
                                   linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, act, a[1]).getResult());
                                 });
            if (quant)
              hAct = dynamicQuantRows(b, loc, hAct, *quant, /*parallel=*/true);
            Value y = expertMatmul(b, loc, hAct, *down, e, exactRows);
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

/// Routing values `v` ([tokens, top_k] ids or weights) widened to
/// [tokens, top_k + shared]: the shared experts as more slots every token
/// fills, expert `experts + s` with weight 1 (weights come out f32).
Value widenSlots(OpBuilder &b, Location loc, Value v, int64_t experts, int64_t shared) {
  auto type = cast<RankedTensorType>(v.getType());
  bool isIds = type.getElementType().isInteger(32);
  int64_t topK = type.getDimSize(1);
  Type elem = isIds ? Type(b.getI32Type()) : Type(b.getF32Type());
  Value tokens = tensor::DimOp::create(b, loc, v, 0);
  AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1);
  Value init = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{tokens, b.getIndexAttr(topK + shared)}, elem);
  return generic(b, loc, ValueRange{}, init, {{d0, d1}}, {par, par},
                 [&](OpBuilder &b, Location loc, ValueRange) {
    Value t = linalg::IndexOp::create(b, loc, 0), j = linalg::IndexOp::create(b, loc, 1);
    Value cK = indexConst(b, loc, topK);
    Value routed = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, j, cK);
    Value jj = arith::MinUIOp::create(b, loc, j, indexConst(b, loc, topK - 1));
    Value picked = extract(b, loc, v, ValueRange{t, jj});
    Value fill = isIds ? toI32(b, loc, arith::AddIOp::create(b, loc, indexConst(b, loc, experts),
                                                             arith::SubIOp::create(b, loc, j, cK)))
                       : f32Const(b, loc, 1.0);
    linalg::YieldOp::create(b, loc, arith::SelectOp::create(b, loc, routed, isIds ? picked : toF32(b, loc, picked), fill).getResult());
  });
}

/// A [rows, hidden] f32 result built from zeros by one work item per block
/// of `block` hidden columns (the items write disjoint columns, so they need
/// no atomics): `fill(b, loc, c0h, width, acc)` returns the [rows, width]
/// block at column c0h, updated from `acc`.
using BlockFill = function_ref<Value(OpBuilder &, Location, Value, Value, Value)>;
Value overHiddenBlocks(OpBuilder &b, Location loc, OpFoldResult rows, int64_t hidden,
                       OpFoldResult block, BlockFill fill) {
  Value zeros = filled(b, loc, {rows, b.getIndexAttr(hidden)}, b.getF32Type(), 0.0);
  // A constant block: a static item count, the block a constant inside.
  std::optional<int64_t> fixed = getConstantIntValue(block);
  OpFoldResult count =
      fixed ? OpFoldResult(b.getIndexAttr(llvm::divideCeil(hidden, *fixed)))
            : OpFoldResult(arith::CeilDivUIOp::create(b, loc, indexConst(b, loc, hidden),
                                                      cast<Value>(block))
                               .getResult());
  auto items = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{count}, ValueRange{zeros},
                                     std::nullopt);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(items.getBody());
  Value blockValue = fixed ? indexConst(b, loc, *fixed) : cast<Value>(block);
  Value c0h = arith::MulIOp::create(b, loc, items.getInductionVars()[0], blockValue);
  Value width = arith::MinUIOp::create(b, loc, blockValue,
                                       arith::SubIOp::create(b, loc, indexConst(b, loc, hidden), c0h));
  auto blockType = RankedTensorType::get({ShapedType::kDynamic, ShapedType::kDynamic}, b.getF32Type());
  Value acc = slice(b, loc, blockType, items.getRegionIterArgs()[0], {b.getIndexAttr(0), c0h},
                    {rows, width});
  Value updated = fill(b, loc, c0h, width, acc);
  b.setInsertionPointToStart(items.getTerminator().getBody());
  tensor::ParallelInsertSliceOp::create(
      b, loc, updated, items.getRegionIterArgs()[0], ArrayRef<OpFoldResult>{b.getIndexAttr(0), c0h},
      ArrayRef<OpFoldResult>{rows, width}, ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
  return items.getResult(0);
}

/// `acc` (a block of token rows, `width` columns) with columns [col, col +
/// width) of row `r` of `from` added into its row `t`: one step of a
/// combine, the order of the steps being the order of the additions.
Value addRowInto(OpBuilder &b, Location loc, Value acc, Value t, Value from, Value r,
                 OpFoldResult col, Value width, Value scale = {}) {
  auto rowType = RankedTensorType::get({1, ShapedType::kDynamic}, b.getF32Type());
  AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1);
  Value row = slice(b, loc, rowType, acc, {t, b.getIndexAttr(0)}, {b.getIndexAttr(1), width});
  Value add = slice(b, loc, rowType, from, {r, col}, {b.getIndexAttr(1), width});
  Value sum = generic(b, loc, add, row, {{d0, d1}, {d0, d1}}, {par, par},
                      [&](OpBuilder &b, Location loc, ValueRange v) {
    Value x = scale ? arith::MulFOp::create(b, loc, v[0], scale).getResult() : v[0];
    linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, v[1], x).getResult());
  });
  return tensor::InsertSliceOp::create(b, loc, sum, acc, ArrayRef<OpFoldResult>{t, b.getIndexAttr(0)},
                                       ArrayRef<OpFoldResult>{b.getIndexAttr(1), width},
                                       ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
}

/// a [m, k] x w [n, k] -> [m, n], marked as one work item's kernel.
Value itemContraction(OpBuilder &b, Location loc, Value a, const WeightOperand &w,
                      bool precise = false) {
  Value rowsOf = w.isPacked() ? w.data : w.tensor;
  SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, a, 0),
                                     tensor::getMixedSize(b, loc, rowsOf, 0)};
  Value out =
      markKernel(weightContraction(b, loc, a, w, filled(b, loc, sizes, b.getF32Type(), 0.0)));
  if (precise)
    attrs::mark(out.getDefiningOp(), attrs::preciseName());
  return out;
}

/// The lowering configuration of a fused op built from parallel work items,
/// or null after an error naming the fusion's flag when the target has no
/// thread pool (its configuration says parallel = false).
LoweringConfigAttr parallelConfig(Operation *op, StringRef fusion) {
  LoweringConfigAttr config = attrs::getLoweringConfig(op);
  if (config.getParallel())
    return config;
  op->emitError() << "'" << op->getName()
                  << "' is built from parallel work items, which this target's lowering "
                     "configuration has none of (keep the steps: --"
                  << fusion << "=false)";
  return {};
}

/// The experts one rank computes (moe.expert_rows): for each expert of the
/// layer (routed, then shared), its index in the rank's stacked weights, or
/// -1 for an expert of another rank.
struct Ownership {
  SmallVector<int32_t> localIndex;
};

/// moe.fused_experts, or with `own` moe.expert_rows: the same work items
/// over the owned experts, their down products written as rows in dispatch
/// order instead of added into the tokens.
template <typename OpTy>
LogicalResult lowerExperts(OpTy op, PatternRewriter &b, const Ownership *own) {
  {
    // Work-item widths (FFN columns of the gate/up phase, hidden columns of
    // the down phase) from the target's lowering configuration.
    LoweringConfigAttr config = parallelConfig(op, "moe-fuse-experts");
    if (!config)
      return failure();
    const int64_t ffnBlock = config.getFfnBlock();
    // The weights, float or packed (the shared experts' are null when there
    // are none).
    auto operand = [&](Value w) -> FailureOr<WeightOperand> {
      if (!w)
        return WeightOperand();
      return weightOperand(op, w);
    };
    FailureOr<WeightOperand> gateW = operand(op.getGate()), upW = operand(op.getUp()),
                             downW = operand(op.getDown()),
                             sharedGateW = operand(op.getSharedGateProj()),
                             sharedUpW = operand(op.getSharedUpProj()),
                             sharedDownW = operand(op.getSharedDownProj());
    if (failed(gateW) || failed(upW) || failed(downW) || failed(sharedGateW) ||
        failed(sharedUpW) || failed(sharedDownW))
      return failure();
    if (op.getActivation() != llm::ActivationKind::silu)
      return b.notifyMatchFailure(op, "only SiLU experts are lowered");
    Location loc = op.getLoc();
    Value x = op.getInput(), ids = op.getIds(), weights = op.getWeights();
    SmallVector<int64_t> gateShape = gateW->getShape();
    int64_t ffn = gateShape[1], hidden = gateShape[2];
    int64_t experts = own ? static_cast<int64_t>(own->localIndex.size()) - op.getNumSharedExperts()
                          : gateShape[0];
    // Shared experts past the first start at column s * ffn of the dense
    // down projection: a packed one must have its groups (and bytes)
    // aligned there.
    if (op.getNumSharedExperts() > 1 && sharedDownW->isPacked() &&
        (ffn % sharedDownW->group != 0 || (sharedDownW->nibbles && ffn % 32 != 0)))
      return op.emitError() << "the shared experts' down projection is packed in groups of "
                            << sharedDownW->group << ", which do not align with each expert's "
                            << ffn << " columns";
    int64_t shared = op.getNumSharedExperts(), allExperts = experts + shared;
    int64_t topK = cast<RankedTensorType>(ids.getType()).getDimSize(1), slots = topK + shared;
    Value tokens = tensor::DimOp::create(b, loc, x, 0);
    AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1);
    Value c0 = indexConst(b, loc, 0), c1 = indexConst(b, loc, 1);
    Value cE = indexConst(b, loc, experts), cF = indexConst(b, loc, ffn);

    // Shared experts as `shared` more slots every token fills, weight 1.
    if (shared > 0) {
      ids = widenSlots(b, loc, ids, experts, shared);
      weights = widenSlots(b, loc, weights, experts, shared);
    }
    // The shared experts sort last and their rows are x itself: only the
    // routed copies are gathered.
    Value order;
    std::optional<llm::DynamicQuant> quant = op.getActivationQuant();
    if constexpr (std::is_same_v<OpTy, moe::FusedExpertsOp>)
      order = op.getInputOrder();
    // W8A8: the routed copies are of the quantized rows (the verifier
    // refuses shared experts with it); or, where the target's kernels
    // quantize int8 rows themselves (row_quant), of the raw rows, with the
    // products marked moir.row_quant (and the routing weight applied to the
    // down product's rows, after their quantization, as with `quant`).
    bool rowQuant = foldsRowQuant(op, op.getGate(), quant);
    if (rowQuant)
      quant = std::nullopt;
    Value routedX = quant ? dynamicQuantRows(b, loc, x, *quant, /*parallel=*/true) : x;
    bool exactRows = keepsActivations(quant);
    auto contract = [&](OpBuilder &b, Location loc, Value a, const WeightOperand &w) {
      Value product = itemContraction(b, loc, a, w, exactRows);
      if (rowQuant)
        attrs::mark(product.getDefiningOp(), attrs::rowQuantName());
      return product;
    };
    Dispatched d = buildDispatch(b, loc, routedX, ids, allExperts,
                                 shared > 0 ? std::optional<int64_t>(topK) : std::nullopt, order);
    Value copies = tensor::DimOp::create(b, loc, d.sources, 0);
    Value flatWeights = tensor::CollapseShapeOp::create(b, loc, weights,
                                                       ArrayRef<ReassociationIndices>{{0, 1}});
    // The routing weight of dispatch row `first` + i, for row i of a
    // generic (first null: 0).
    auto rowWeight = [&](OpBuilder &b, Location loc, Value first) -> Value {
      Value r = linalg::IndexOp::create(b, loc, 0);
      if (first)
        r = arith::AddIOp::create(b, loc, first, r);
      return toF32(b, loc, extract(b, loc, flatWeights,
                                   toIndex(b, loc, extract(b, loc, d.sources, r))));
    };
    // `rows` times their routing weights (dispatch rows `first`...).
    auto weighted = [&](OpBuilder &b, Location loc, Value rows, Value first) -> Value {
      return generic(b, loc, rows,
                     tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, rows), b.getF32Type()),
                     {{d0, d1}, {d0, d1}}, {par, par}, [&](OpBuilder &b, Location loc, ValueRange v) {
        linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, v[0], rowWeight(b, loc, first))
                                            .getResult());
      });
    };

    // The experts some token selected, compacted: the work items cover
    // only them (at decode, top-k of the experts).
    // With `own`: each expert's index in the local weights (-1: not ours).
    Value localIndex;
    if (own)
      localIndex = arith::ConstantOp::create(
          b, loc, DenseIntElementsAttr::get(RankedTensorType::get({allExperts}, b.getI32Type()),
                                            ArrayRef<int32_t>(own->localIndex)));
    auto weightIndex = [&](OpBuilder &b, Location loc, Value e) -> Value {
      return own ? toIndex(b, loc, extract(b, loc, localIndex, e)) : e;
    };
    Value active0 = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{allExperts}, b.getI32Type());
    SmallVector<Value> compacted = loop(
        b, loc, c0, indexConst(b, loc, allExperts), ValueRange{active0, c0},
        [&](OpBuilder &b, Location loc, Value e, ValueRange a) {
          Value lo = extract(b, loc, d.offsets, e);
          Value hi = extract(b, loc, d.offsets, arith::AddIOp::create(b, loc, e, c1).getResult());
          Value used = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, hi, lo);
          if (own) {
            Value zero = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
            Value ours = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                               extract(b, loc, localIndex, e), zero);
            used = arith::AndIOp::create(b, loc, used, ours);
          }
          // count <= e: the slot is in bounds; an unused expert's entry is
          // overwritten by the next used one.
          Value list = insert(b, loc, toI32(b, loc, e), a[0], a[1]);
          Value next = arith::SelectOp::create(b, loc, used, arith::AddIOp::create(b, loc, a[1], c1), a[1]);
          return SmallVector<Value>{list, next};
        });
    Value active = compacted[0], numActive = compacted[1];
    auto expertRows = [&](OpBuilder &b, Location loc, Value a) {
      Value e = toIndex(b, loc, extract(b, loc, active, a));
      Value lo = toIndex(b, loc, extract(b, loc, d.offsets, e));
      Value hi = toIndex(b, loc, extract(b, loc, d.offsets, arith::AddIOp::create(b, loc, e, c1).getResult()));
      return std::make_tuple(e, lo, arith::SubIOp::create(b, loc, hi, lo).getResult());
    };
    // Rows [lo, lo + count) of a routed expert's weight, or of a shared
    // expert's (s = e - experts: FFN columns [s * ffn, (s + 1) * ffn)).
    auto routedBlock = [&](OpBuilder &b, Location loc, Value e, const WeightOperand &stacked,
                           bool down, Value lo, Value count) -> WeightOperand {
      int64_t inner = down ? ffn : hidden;
      return stacked.slice(b, loc, {weightIndex(b, loc, e), lo, b.getIndexAttr(0)},
                           {b.getIndexAttr(1), count, b.getIndexAttr(inner)}, /*dropped=*/{0});
    };
    auto sharedBlock = [&](OpBuilder &b, Location loc, Value e, const WeightOperand &dense,
                           bool down, Value lo, Value count) -> WeightOperand {
      int64_t inner = down ? ffn : hidden;
      Value base = arith::MulIOp::create(b, loc, arith::SubIOp::create(b, loc, e, cE), cF);
      SmallVector<OpFoldResult> offsets =
          down ? SmallVector<OpFoldResult>{lo, base}
               : SmallVector<OpFoldResult>{arith::AddIOp::create(b, loc, base, lo).getResult(),
                                           b.getIndexAttr(0)};
      return dense.slice(b, loc, offsets, {count, b.getIndexAttr(inner)});
    };
    // `body` for a routed expert and, when there are shared experts, in an
    // scf.if for them: each branch has its own contractions, so the kernels
    // see each operand's own (unit-stride) layout.
    using ExpertBody = function_ref<SmallVector<Value>(OpBuilder &, Location, bool)>;
    auto perExpert = [&](OpBuilder &b, Location loc, Value e, ExpertBody body) {
      if (shared == 0)
        return body(b, loc, /*routed=*/true);
      Value isRouted = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, e, cE);
      auto branch = scf::IfOp::create(
          b, loc, isRouted,
          [&](OpBuilder &b, Location loc) { scf::YieldOp::create(b, loc, body(b, loc, true)); },
          [&](OpBuilder &b, Location loc) { scf::YieldOp::create(b, loc, body(b, loc, false)); });
      return SmallVector<Value>(branch.getResults());
    };
    // The work items' FFN columns: in decode (fewer than 8 copies per
    // expert on average: the products take the row kernels, which stream
    // each weight once) the configuration's decode block, whose longer runs
    // of rows stream faster; else ffn_block, a block of weights that stays
    // in the core's L2 while the expert's rows pass.
    int64_t decodeBlock = config.getDecodeFfnBlockOrDefault();
    Value streaming;
    auto blockConst = [&](int64_t prefill, int64_t decode) -> Value {
      if (prefill == decode)
        return indexConst(b, loc, prefill);
      if (!streaming)
        streaming = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::ult,
            arith::MulIOp::create(b, loc, tokens, indexConst(b, loc, slots)),
            indexConst(b, loc, 8 * allExperts));
      return arith::SelectOp::create(b, loc, streaming, indexConst(b, loc, decode),
                                     indexConst(b, loc, prefill));
    };
    Value block = blockConst(ffnBlock, decodeBlock);
    auto blockWidth = [&](OpBuilder &b, Location loc, Value start, int64_t total) {
      return arith::MinUIOp::create(b, loc, block,
                                    arith::SubIOp::create(b, loc, indexConst(b, loc, total), start)).getResult();
    };

    // Phase 1: h = w * silu(rows Wg^T) .* (rows Wu^T), one work item per
    // (selected expert, block of FFN columns), block-major (item i: expert
    // i % active, block i / active), so that the thread pool's contiguous
    // split gives every thread its share of each expert's blocks. The
    // experts' rows follow the routing (16 to 497 of a 512-token prompt's
    // 1024 copies on the Mixtral-shaped benchmark), and an expert-major order
    // left one of two threads idle for 18% of the phase (bench/RESULTS.md).
    Value ffnBlocks = arith::CeilDivUIOp::create(b, loc, cF, block);
    Value items = arith::MulIOp::create(b, loc, numActive, ffnBlocks);
    Value h0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{copies, b.getIndexAttr(ffn)}, b.getF32Type());
    auto gateUp = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{items}, ValueRange{h0}, std::nullopt);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(gateUp.getBody());
      Value item = gateUp.getInductionVars()[0];
      Value a = arith::RemUIOp::create(b, loc, item, numActive);
      Value f0 = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, item, numActive),
                                       block);
      auto [e, lo, n] = expertRows(b, loc, a);
      Value width = blockWidth(b, loc, f0, ffn);
      auto rowsType = RankedTensorType::get({ShapedType::kDynamic, hidden}, b.getF32Type());
      SmallVector<Value> gu = perExpert(b, loc, e, [&](OpBuilder &b, Location loc, bool routed) {
        // A shared expert's rows are x itself (every token, in order).
        // (Cast: a static token count must not make the branches' types
        // differ.)
        Value xs = routed ? slice(b, loc, rowsType, d.rows, {lo, b.getIndexAttr(0)},
                                  {n, b.getIndexAttr(hidden)})
                          : tensor::CastOp::create(b, loc, rowsType, x).getResult();
        auto block = [&](const WeightOperand &stacked, const WeightOperand &dense) {
          return routed ? routedBlock(b, loc, e, stacked, false, f0, width)
                        : sharedBlock(b, loc, e, dense, false, f0, width);
        };
        return SmallVector<Value>{contract(b, loc, xs, block(*gateW, *sharedGateW)),
                                  contract(b, loc, xs, block(*upW, *sharedUpW))};
      });
      Value g = gu[0], u = gu[1];
      // The routing weight of each row's copy, applied before the (linear)
      // down product: looked up once per row, so the elementwise product
      // below is free of indirect loads and vectorizes.
      Value rowWeights = generic(b, loc, ValueRange{},
                                 tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{n}, b.getF32Type()),
                                 {{d0}}, {par}, [&](OpBuilder &b, Location loc, ValueRange) {
        linalg::YieldOp::create(b, loc, rowWeight(b, loc, lo));
      });
      // W8A8: the weight waits until the rows are quantized (below).
      Value hBlock = generic(b, loc, ValueRange{g, u, rowWeights},
                             tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{n, width}, b.getF32Type()),
                             {{d0, d1}, {d0, d1}, {d0}, {d0, d1}}, {par, par},
                             [&](OpBuilder &b, Location loc, ValueRange v) {
        Value act = activation(b, loc, op.getActivation(), v[0]);
        Value prod = arith::MulFOp::create(b, loc, act, v[1]);
        if (!quant && !rowQuant)
          prod = arith::MulFOp::create(b, loc, prod, v[2]);
        linalg::YieldOp::create(b, loc, prod);
      });
      b.setInsertionPointToStart(gateUp.getTerminator().getBody());
      tensor::ParallelInsertSliceOp::create(
          b, loc, hBlock, gateUp.getRegionIterArgs()[0], ArrayRef<OpFoldResult>{lo, f0},
          ArrayRef<OpFoldResult>{n, width}, ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    }
    Value h = gateUp.getResult(0);
    if (quant) {
      // Down reads each row quantized over all of its FFN columns, then
      // times its routing weight (the product is linear in it).
      h = markParallel(weighted(b, loc, dynamicQuantRows(b, loc, h, *quant, /*parallel=*/true),
                                Value()));
    }

    // Phase 2: the down products of every selected expert's rows, one work
    // item per block of hidden columns. moe.fused_experts adds each row into
    // its token (the combine: a token's rows in expert order); an
    // expert_rows writes the rows themselves (the other ranks' stay zero).
    // Its items cover at least kDownItemWeights weights of each expert
    // (block x ffn): narrow experts (an FFN of 256) would otherwise pay each
    // product's setup and lane sums for a few thousand weights (measured on
    // the DeepSeek-V2-Lite-shaped Q8_0 decode: blocks of 128 hidden columns
    // instead of 64, +4%; bench/RESULTS.md).
    constexpr int64_t kDownItemWeights = 32768;
    auto downBlockOf = [&](int64_t block) {
      return block * llvm::divideCeil(kDownItemWeights, block * ffn);
    };
    Value downBlock = blockConst(downBlockOf(ffnBlock), downBlockOf(decodeBlock));
    Value down = overHiddenBlocks(
        b, loc, own ? OpFoldResult(copies) : OpFoldResult(tokens), hidden, downBlock,
        [&](OpBuilder &b, Location loc, Value c0h, Value width, Value block) {
      return loop(b, loc, c0, numActive, block, [&](OpBuilder &b, Location loc, Value a, ValueRange acc) {
        auto [e, lo, n] = expertRows(b, loc, a);
        auto hType = RankedTensorType::get({ShapedType::kDynamic, ffn}, b.getF32Type());
        Value hs = slice(b, loc, hType, h, {lo, b.getIndexAttr(0)}, {n, b.getIndexAttr(ffn)});
        Value out = perExpert(b, loc, e, [&](OpBuilder &b, Location loc, bool routed) {
          WeightOperand w = routed ? routedBlock(b, loc, e, *downW, true, c0h, width)
                                   : sharedBlock(b, loc, e, *sharedDownW, true, c0h, width);
          return SmallVector<Value>{contract(b, loc, hs, w)};
        })[0];
        // The routing weight the rows' int8 quantization left out (as
        // addRowInto applies it below).
        if (own && rowQuant)
          out = weighted(b, loc, out, lo);
        if (own)
          return SmallVector<Value>{tensor::InsertSliceOp::create(
              b, loc, out, acc[0], ArrayRef<OpFoldResult>{lo, b.getIndexAttr(0)},
              ArrayRef<OpFoldResult>{n, width},
              ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)}).getResult()};
        return loop(b, loc, c0, n, acc[0], [&](OpBuilder &b, Location loc, Value r, ValueRange acc) {
          Value src = toIndex(b, loc, extract(b, loc, d.sources, arith::AddIOp::create(b, loc, lo, r).getResult()));
          Value t = arith::DivUIOp::create(b, loc, src, indexConst(b, loc, slots));
          Value weight = rowQuant ? toF32(b, loc, extract(b, loc, flatWeights, src)) : Value();
          return SmallVector<Value>{addRowInto(b, loc, acc[0], t, out, r, b.getIndexAttr(0), width, weight)};
        });
      })[0];
    });
    b.replaceOp(op, tensor::CastOp::create(b, loc, op.getType(), down).getResult());
    return success();
  }
}

struct LowerFusedExperts : OpRewritePattern<moe::FusedExpertsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::FusedExpertsOp op, PatternRewriter &b) const override {
    return lowerExperts(op, b, nullptr);
  }
};

struct LowerExpertRows : OpRewritePattern<moe::ExpertRowsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::ExpertRowsOp op, PatternRewriter &b) const override {
    Ownership own;
    int64_t routed = op.getNumRoutedExperts();
    int32_t next = 0;
    for (auto [e, owner] : llvm::enumerate(op.getOwners())) {
      bool ours = owner == static_cast<int32_t>(op.getRank());
      // Routed experts index the rank's stacked weights; shared ones keep
      // their column block of the whole shared weights.
      own.localIndex.push_back(!ours ? -1 : static_cast<int64_t>(e) < routed ? next++ : 0);
    }
    return lowerExperts(op, b, &own);
  }
};

/// moe.combine_rows: the additions of moe.fused_experts' down phase, the
/// rows read instead of computed: one work item per block of hidden
/// columns, each token's rows added in expert order.
struct LowerCombineRows : OpRewritePattern<moe::CombineRowsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::CombineRowsOp op, PatternRewriter &b) const override {
    LoweringConfigAttr config = parallelConfig(op, "moe-fuse-experts");
    if (!config)
      return failure();
    const int64_t block = config.getFfnBlock();
    Location loc = op.getLoc();
    Value rows = op.getRows(), ids = op.getIds();
    int64_t experts = op.getNumExperts(), shared = op.getNumShared();
    int64_t slots = cast<RankedTensorType>(ids.getType()).getDimSize(1) + shared;
    int64_t hidden = cast<RankedTensorType>(rows.getType()).getDimSize(1);
    if (shared > 0)
      ids = widenSlots(b, loc, ids, experts, shared);
    Dispatched d = buildDispatch(b, loc, Value(), ids, experts + shared);
    Value tokens = tensor::DimOp::create(b, loc, ids, 0);
    Value c1 = indexConst(b, loc, 1);
    Value y = overHiddenBlocks(b, loc, tokens, hidden, b.getIndexAttr(block),
                               [&](OpBuilder &b, Location loc, Value c0h, Value width, Value yBlock) {
      return loop(b, loc, indexConst(b, loc, 0), indexConst(b, loc, experts + shared), yBlock,
                  [&](OpBuilder &b, Location loc, Value e, ValueRange acc) {
        Value lo = toIndex(b, loc, extract(b, loc, d.offsets, e));
        Value hi = toIndex(b, loc, extract(b, loc, d.offsets, arith::AddIOp::create(b, loc, e, c1).getResult()));
        return loop(b, loc, lo, hi, acc[0], [&](OpBuilder &b, Location loc, Value r, ValueRange acc) {
          Value t = arith::DivUIOp::create(b, loc, toIndex(b, loc, extract(b, loc, d.sources, r)),
                                           indexConst(b, loc, slots));
          return SmallVector<Value>{addRowInto(b, loc, acc[0], t, rows, r, c0h, width)};
        });
      })[0];
    });
    b.replaceOp(op, tensor::CastOp::create(b, loc, op.getType(), y).getResult());
    return success();
  }
};

struct LowerFusedRoute : OpRewritePattern<moe::FusedRouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(moe::FusedRouteOp op, PatternRewriter &b) const override {
    // Tokens per work item (the router weight is read once per block).
    LoweringConfigAttr config = parallelConfig(op, "moe-fuse-router");
    if (!config)
      return failure();
    const int64_t tokenBlock = config.getTokenBlock();
    Location loc = op.getLoc();
    moe::RoutingAttr routing = op.getRouting();
    Value x = op.getInput(), router = op.getRouter();
    auto routerType = cast<RankedTensorType>(router.getType());
    int64_t experts = routerType.getDimSize(0);
    int64_t k = routing.getTopK();
    Value tokens = tensor::DimOp::create(b, loc, x, 0);
    SmallVector<OpFoldResult> outSizes = {tokens, b.getIndexAttr(k)};
    Value weights0 = tensor::EmptyOp::create(b, loc, outSizes, b.getF32Type());
    Value ids0 = tensor::EmptyOp::create(b, loc, outSizes, b.getI32Type());
    // The router product over all tokens, parallel over its weight rows
    // (the experts): inside the token blocks' loop a decode step's whole
    // product was one work item, so one thread. Expert choice is
    // discrete: the product stays f32 (moir.precise).
    Value allLogits = markParallel(weightContraction(
        b, loc, x, *WeightOperand::of(router),
        filled(b, loc, {tokens, b.getIndexAttr(experts)}, b.getF32Type(), 0.0)));
    attrs::mark(allLogits.getDefiningOp(), attrs::preciseName());
    Value blocks = arith::CeilDivUIOp::create(b, loc, tokens, indexConst(b, loc, tokenBlock));
    auto forall = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{blocks},
                                        ValueRange{weights0, ids0}, std::nullopt);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(forall.getBody());
      Value t0 = arith::MulIOp::create(b, loc, forall.getInductionVars()[0], indexConst(b, loc, tokenBlock));
      Value n = arith::MinUIOp::create(b, loc, indexConst(b, loc, tokenBlock),
                                       arith::SubIOp::create(b, loc, tokens, t0));
      Value logits =
          slice(b, loc, RankedTensorType::get({ShapedType::kDynamic, experts}, b.getF32Type()),
                allLogits, {t0, b.getIndexAttr(0)}, {n, b.getIndexAttr(experts)});
      SmallVector<OpFoldResult> blockSizes = {n, b.getIndexAttr(k)};
      SmallVector<Value> routed = loop(
          b, loc, indexConst(b, loc, 0), n,
          ValueRange{tensor::EmptyOp::create(b, loc, blockSizes, b.getF32Type()),
                     tensor::EmptyOp::create(b, loc, blockSizes, b.getI32Type())},
          [&](OpBuilder &b, Location loc, Value t, ValueRange acc) {
            Value row = slice(b, loc, RankedTensorType::get({experts}, b.getF32Type()), logits,
                              {t, b.getIndexAttr(0)}, {b.getIndexAttr(1), b.getIndexAttr(experts)});
            auto [w, ids] = insertRow(b, loc, routeToken(b, loc, routing, row, op.getCorrectionBias(), experts),
                                      acc[0], acc[1], t, k);
            return SmallVector<Value>{w, ids};
          });
      b.setInsertionPointToStart(forall.getTerminator().getBody());
      for (auto [value, out] : llvm::zip(routed, forall.getRegionIterArgs()))
        tensor::ParallelInsertSliceOp::create(
            b, loc, value, out, ArrayRef<OpFoldResult>{t0, b.getIndexAttr(0)}, blockSizes,
            ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    }
    b.replaceOp(op, {tensor::CastOp::create(b, loc, op.getWeights().getType(), forall.getResult(0)).getResult(),
                     tensor::CastOp::create(b, loc, op.getIds().getType(), forall.getResult(1)).getResult()});
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
  patterns.add<LowerRoute, LowerDispatch, LowerExpertFFN, LowerCombine, LowerFusedExperts,
               LowerExpertRows, LowerCombineRows, LowerFusedRoute>(patterns.getContext());
}
