//===- FlashAttention.cpp - attention by online softmax over key blocks ----===//
//
// One scf.forall over (block of queries, KV head). A work item's rows are its
// queries times the query heads sharing the KV head (grouped-query attention
// reads each key and value row once per group, not once per head). It walks
// the key blocks its queries can see, carrying per row the running maximum m,
// the running sum l of exp(score - m) and the output accumulated with those
// weights; each block rescales l and the output by exp(m_old - m_new). The
// score and probability matrices of a block (rows x 64 keys) are the only
// intermediates: nothing of size [tokens, heads, keys] is written.
//
//===----------------------------------------------------------------------===//

#include "Builders.h"

#include "moir/Conversion/Passes.h"

#include <limits>

using namespace mlir;

namespace moir::lowering {

namespace {

Value extract(OpBuilder &b, Location loc, Value t, ValueRange idx) {
  return tensor::ExtractOp::create(b, loc, t, idx);
}

/// [offsets, sizes) of `t` (unit strides) as `type` (rank-reducing where
/// `type` drops unit dimensions).
Value slice(OpBuilder &b, Location loc, RankedTensorType type, Value t,
            ArrayRef<OpFoldResult> offsets, ArrayRef<OpFoldResult> sizes) {
  SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
  return tensor::ExtractSliceOp::create(b, loc, type, t, offsets, sizes, strides);
}

Value i64(OpBuilder &b, Location loc, Value v) {
  if (v.getType().isIndex())
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), v);
  if (v.getType() != b.getI64Type())
    return arith::ExtSIOp::create(b, loc, b.getI64Type(), v);
  return v;
}

/// Row-wise reduction of `x` [rows, n] into `init` [rows].
Value reduceRows(OpBuilder &b, Location loc, Value x, Value init,
                 function_ref<Value(OpBuilder &, Location, Value, Value)> combine) {
  AffineExpr r = b.getAffineDimExpr(0), j = b.getAffineDimExpr(1);
  return generic(b, loc, x, init, {{r, j}, {r}}, {par, red},
                 [&](OpBuilder &b, Location loc, ValueRange v) {
                   linalg::YieldOp::create(b, loc, combine(b, loc, v[0], v[1]));
                 });
}

} // namespace

Value flashAttention(OpBuilder &b, Location loc, const FlashAttention &a) {
  auto qType = cast<RankedTensorType>(a.q.getType());
  auto kType = cast<RankedTensorType>(a.k.values.getType());
  auto vType = cast<RankedTensorType>(a.v.values.getType());
  int64_t heads = qType.getDimSize(1), dk = qType.getDimSize(2), kvHeads = kType.getDimSize(1),
          dv = vType.getDimSize(2);
  int64_t group = heads / kvHeads, queryBlock = flashQueryBlock(group);
  Type f32 = b.getF32Type();
  auto cst = [&](int64_t v) { return indexConst(b, loc, v); };
  AffineExpr r = b.getAffineDimExpr(0), j = b.getAffineDimExpr(1), e = b.getAffineDimExpr(2);

  Value tokens = tensor::DimOp::create(b, loc, a.q, 0);
  Value queryBlocks = arith::CeilDivUIOp::create(b, loc, tokens, cst(queryBlock));
  Value items = arith::MulIOp::create(b, loc, queryBlocks, cst(kvHeads));
  Value out0 = tensor::EmptyOp::create(
      b, loc, ArrayRef<OpFoldResult>{tokens, b.getIndexAttr(heads), b.getIndexAttr(dv)}, f32);
  auto forall = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{items}, ValueRange{out0},
                                      std::nullopt);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(forall.getBody());
  Value item = forall.getInductionVars()[0];
  Value g = arith::RemUIOp::create(b, loc, item, cst(kvHeads));
  // Later query blocks see more keys. The thread pool splits the items into
  // contiguous runs, so item order pairs blocks from both ends (0, n-1, 1,
  // n-2, ...): every run gets a balanced share of a causal prefill.
  Value order = arith::DivUIOp::create(b, loc, item, cst(kvHeads));
  Value half = arith::DivUIOp::create(b, loc, order, cst(2));
  Value odd = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne,
                                    arith::RemUIOp::create(b, loc, order, cst(2)), cst(0));
  Value fromEnd = arith::SubIOp::create(
      b, loc, arith::SubIOp::create(b, loc, queryBlocks, cst(1)), half);
  Value qb = arith::SelectOp::create(b, loc, odd, fromEnd, half);
  Value t0 = arith::MulIOp::create(b, loc, qb, cst(queryBlock));
  Value nt = arith::MinUIOp::create(b, loc, cst(queryBlock),
                                    arith::SubIOp::create(b, loc, tokens, t0));
  Value h0 = arith::MulIOp::create(b, loc, g, cst(group));
  Value rows = arith::MulIOp::create(b, loc, nt, cst(group));

  // The block's queries of the group's heads, times the softmax scale, as
  // rows t * group + h of one [rows, dk] operand.
  int64_t dyn = ShapedType::kDynamic;
  Value qBlock = slice(b, loc, RankedTensorType::get({dyn, group, dk}, qType.getElementType()),
                       a.q, {t0, h0, b.getIndexAttr(0)},
                       {nt, b.getIndexAttr(group), b.getIndexAttr(dk)});
  Value scaled = generic(
      b, loc, qBlock,
      tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{nt, b.getIndexAttr(group), b.getIndexAttr(dk)}, f32),
      {{r, j, e}, {r, j, e}}, {par, par, par}, [&](OpBuilder &b, Location loc, ValueRange v) {
        linalg::YieldOp::create(
            b, loc, arith::MulFOp::create(b, loc, toF32(b, loc, v[0]), f32Const(b, loc, a.scale))
                        .getResult());
      });
  Value queries = tensor::CollapseShapeOp::create(
      b, loc, scaled, ArrayRef<ReassociationIndices>{{0, 1}, {2}});

  // The keys the block's queries see: [lo, hi) with hi = max position + 1
  // (at most len) and, with a sliding window, lo = min position - window + 1.
  auto posType = cast<RankedTensorType>(a.positions.getType());
  Value positions = slice(b, loc, RankedTensorType::get({dyn}, posType.getElementType()),
                          a.positions, {t0}, {nt});
  Value lowest = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(std::numeric_limits<int64_t>::min()));
  Value highest = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(std::numeric_limits<int64_t>::max()));
  auto span = scf::ForOp::create(
      b, loc, cst(0), nt, cst(1), ValueRange{highest, lowest},
      [&](OpBuilder &b, Location loc, Value t, ValueRange acc) {
        Value p = i64(b, loc, extract(b, loc, positions, t));
        scf::YieldOp::create(b, loc, ValueRange{arith::MinSIOp::create(b, loc, acc[0], p),
                                                arith::MaxSIOp::create(b, loc, acc[1], p)});
      });
  Value hi = arith::MinSIOp::create(
      b, loc, a.len,
      arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                 arith::AddIOp::create(b, loc, span.getResult(1),
                                                       arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(1)))));
  Value lo = cst(0);
  if (a.window) {
    Value first = arith::SubIOp::create(
        b, loc, span.getResult(0), arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(*a.window - 1)));
    first = arith::MaxSIOp::create(b, loc, first, arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0)));
    Value firstIndex = arith::IndexCastOp::create(b, loc, b.getIndexType(), first);
    lo = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, firstIndex, cst(kFlashKeys)),
                               cst(kFlashKeys));
    lo = arith::MinSIOp::create(b, loc, lo, hi);
  }

  auto rowVector = [&](OpBuilder &b, Location loc, double value) {
    return filled(b, loc, {rows}, f32, value);
  };
  Value acc0 = filled(b, loc, {rows, b.getIndexAttr(dv)}, f32, 0.0);
  // The running maximum starts at the lowest finite float: a block whose
  // keys a row cannot see leaves it there and exp(-inf - m) = 0, never
  // exp(-inf + inf).
  Value max0 = rowVector(b, loc, -std::numeric_limits<float>::max());
  Value sum0 = rowVector(b, loc, 0.0);
  float negInf = -std::numeric_limits<float>::infinity();
  auto blocks = scf::ForOp::create(
      b, loc, lo, hi, cst(kFlashKeys), ValueRange{acc0, max0, sum0},
      [&](OpBuilder &b, Location loc, Value s0, ValueRange state) {
        Value acc = state[0], mOld = state[1], lOld = state[2];
        Value nk = arith::MinUIOp::create(b, loc, cst(kFlashKeys),
                                          arith::SubIOp::create(b, loc, hi, s0));
        auto rowsOf = [&](const CacheRows &c, int64_t dim) {
          auto type = cast<RankedTensorType>(c.values.getType());
          return slice(b, loc, RankedTensorType::get({dyn, dim}, type.getElementType()), c.values,
                       {s0, g, b.getIndexAttr(0)}, {nk, b.getIndexAttr(1), b.getIndexAttr(dim)});
        };
        auto scalesOf = [&](const CacheRows &c) {
          return slice(b, loc, RankedTensorType::get({dyn}, f32), c.scales, {s0, g},
                       {nk, b.getIndexAttr(1)});
        };
        // Scores of the block: one kernel over (row, key).
        Value scores = markKernel(
            rowContraction(b, loc, queries, rowsOf(a.k, dk), filled(b, loc, {rows, nk}, f32, 0.0)));
        // Masked (future keys, keys outside the window), with the key
        // rows' scales of a quantized cache.
        SmallVector<Value> maskInputs = {scores, positions};
        SmallVector<SmallVector<AffineExpr>> maskMaps = {{r, j}, {r.floorDiv(group)}};
        if (a.k.scales) {
          maskInputs.push_back(scalesOf(a.k));
          maskMaps.push_back({j});
        }
        maskMaps.push_back({r, j});
        Value masked = generic(
            b, loc, maskInputs, tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{rows, nk}, f32),
            maskMaps, {par, par}, [&](OpBuilder &b, Location loc, ValueRange v) {
              Value key = i64(b, loc, arith::AddIOp::create(b, loc, s0, linalg::IndexOp::create(b, loc, 1)));
              Value pos = i64(b, loc, v[1]);
              Value hidden = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, key, pos);
              if (a.window) {
                Value age = arith::SubIOp::create(b, loc, pos, key);
                Value w = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(*a.window));
                hidden = arith::OrIOp::create(
                    b, loc, hidden, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, age, w));
              }
              Value x = a.k.scales ? arith::MulFOp::create(b, loc, v[0], v[2]).getResult() : v[0];
              linalg::YieldOp::create(
                  b, loc, arith::SelectOp::create(b, loc, hidden, f32Const(b, loc, negInf), x).getResult());
            });
        // m_new = max(m_old, max of the block's row) and alpha =
        // exp(m_old - m_new), m updated in place (the state stays in the
        // loop's buffers).
        Value blockMax = reduceRows(b, loc, masked, rowVector(b, loc, negInf),
                                    [](OpBuilder &b, Location loc, Value x, Value m) {
          return arith::MaximumFOp::create(b, loc, x, m).getResult();
        });
        auto update = linalg::GenericOp::create(
            b, loc, TypeRange{mOld.getType(), mOld.getType()}, ValueRange{blockMax},
            ValueRange{mOld, tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{rows}, f32)},
            SmallVector<AffineMap>(3, AffineMap::getMultiDimIdentityMap(1, b.getContext())),
            SmallVector<utils::IteratorType>{par}, [](OpBuilder &b, Location loc, ValueRange v) {
              Value mNew = arith::MaximumFOp::create(b, loc, v[0], v[1]);
              Value d = arith::SubFOp::create(b, loc, v[1], mNew);
              linalg::YieldOp::create(b, loc, ValueRange{mNew, math::ExpOp::create(b, loc, d)});
            });
        Value mNew = update.getResult(0), alpha = update.getResult(1);
        Value probs = generic(b, loc, ValueRange{masked, mNew},
                              tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{rows, nk}, f32),
                              {{r, j}, {r}, {r, j}}, {par, par},
                              [](OpBuilder &b, Location loc, ValueRange v) {
          Value d = arith::SubFOp::create(b, loc, v[0], v[1]);
          linalg::YieldOp::create(b, loc, math::ExpOp::create(b, loc, d).getResult());
        });
        // l_new = alpha * l_old + sum of the block's row (in place).
        Value lScaled = generic(b, loc, ValueRange{alpha}, lOld, {{r}, {r}}, {par},
                                [](OpBuilder &b, Location loc, ValueRange v) {
          linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, v[1], v[0]).getResult());
        });
        Value lNew = reduceRows(b, loc, probs, lScaled, [](OpBuilder &b, Location loc, Value p, Value l) {
          return arith::AddFOp::create(b, loc, p, l).getResult();
        });
        // The value rows' scales of a quantized cache weight the
        // probabilities (after their sum).
        Value weights = probs;
        if (a.v.scales)
          weights = generic(b, loc, ValueRange{probs, scalesOf(a.v)},
                            tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{rows, nk}, f32),
                            {{r, j}, {j}, {r, j}}, {par, par},
                            [](OpBuilder &b, Location loc, ValueRange v) {
            linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, v[0], v[1]).getResult());
          });
        // acc = alpha * acc + weights . V (the outer-product kernel: value
        // rows contiguous).
        Value rescaled = generic(b, loc, ValueRange{alpha}, acc, {{r}, {r, j}}, {par, par},
                                 [](OpBuilder &b, Location loc, ValueRange v) {
          linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, v[1], v[0]).getResult());
        });
        AffineExpr m = b.getAffineDimExpr(0), n = b.getAffineDimExpr(1), k = b.getAffineDimExpr(2);
        Value accNew = markKernel(generic(b, loc, ValueRange{weights, rowsOf(a.v, dv)}, rescaled,
                                          {{m, k}, {k, n}, {m, n}}, {par, par, red},
                                          multiplyAccumulate));
        scf::YieldOp::create(b, loc, ValueRange{accNew, mNew, lNew});
      });

  Value normalized = generic(
      b, loc, ValueRange{blocks.getResult(0), blocks.getResult(2)},
      tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{rows, b.getIndexAttr(dv)}, f32),
      {{r, j}, {r}, {r, j}}, {par, par}, [](OpBuilder &b, Location loc, ValueRange v) {
        linalg::YieldOp::create(b, loc, arith::DivFOp::create(b, loc, v[0], v[1]).getResult());
      });
  Value result = tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get({dyn, group, dv}, f32), normalized,
      ArrayRef<ReassociationIndices>{{0, 1}, {2}},
      ArrayRef<OpFoldResult>{nt, b.getIndexAttr(group), b.getIndexAttr(dv)});
  b.setInsertionPointToStart(forall.getTerminator().getBody());
  SmallVector<OpFoldResult> ones(3, b.getIndexAttr(1));
  tensor::ParallelInsertSliceOp::create(
      b, loc, result, forall.getRegionIterArgs()[0], ArrayRef<OpFoldResult>{t0, h0, b.getIndexAttr(0)},
      ArrayRef<OpFoldResult>{nt, b.getIndexAttr(group), b.getIndexAttr(dv)}, ones);
  return forall.getResult(0);
}

} // namespace moir::lowering
