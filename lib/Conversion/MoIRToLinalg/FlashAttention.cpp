//===- FlashAttention.cpp - attention by online softmax over key blocks ----===//
//
// Work items are (block of queries, KV head, split of the keys). An item's
// rows are its queries times the query heads sharing the KV head (grouped
// query attention reads each key and value row once per group, not once per
// head). It walks its split of the key blocks its queries can see, carrying
// per row the running maximum m, the running sum l of exp(score - m) and the
// output accumulated with those weights; each block rescales l and the
// output by exp(m_old - m_new). The score and probability matrices of a block
// (rows x 64 keys) are the only intermediates: nothing of size [tokens,
// heads, keys] is written.
//
// When (query blocks x KV heads) alone are too few items for the thread pool
// (decode: one query block), the keys are split too (flash decoding); a
// second parallel loop combines each row's splits by their maxima. With a
// single split it only normalizes.
//
//===----------------------------------------------------------------------===//

#include "Builders.h"

#include "moir/Conversion/Passes.h"

#include <limits>

using namespace mlir;

namespace moir::lowering {

namespace {

Value i64Const(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
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

Value elementwise(OpBuilder &b, Location loc, ValueRange inputs, Value init,
                  ArrayRef<SmallVector<AffineExpr>> maps, unsigned rank,
                  function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  return generic(b, loc, inputs, init, maps, SmallVector<utils::IteratorType>(rank, par),
                 [&](OpBuilder &b, Location loc, ValueRange v) {
                   linalg::YieldOp::create(b, loc, body(b, loc, v));
                 });
}

/// The first dimension past the rows of a cache: its KV heads (3-D) or none
/// (2-D, shared by every head).
bool perHead(const CacheRows &c) {
  return cast<RankedTensorType>(c.values.getType()).getRank() == 3;
}

} // namespace

Value flashAttention(OpBuilder &b, Location loc, const FlashAttention &a) {
  auto qType = cast<RankedTensorType>(a.queries.front().getType());
  auto vType = cast<RankedTensorType>(a.values.values.getType());
  int64_t heads = qType.getDimSize(1), dv = vType.getShape().back(), kvHeads = 1;
  SmallVector<CacheRows> caches(a.keys.begin(), a.keys.end());
  caches.push_back(a.values);
  for (const CacheRows &c : caches)
    if (perHead(c))
      kvHeads = cast<RankedTensorType>(c.values.getType()).getDimSize(1);
  // Block sizes and the work items worth having come from the target's
  // lowering configuration.
  LoweringConfigAttr config = a.config;
  int64_t keyBlock = config.getKeyBlock();
  int64_t group = heads / kvHeads, queryBlock = config.getQueryBlock(group),
          rowsMax = queryBlock * group;
  Type f32 = b.getF32Type();
  int64_t dyn = ShapedType::kDynamic;
  auto cst = [&](int64_t v) { return indexConst(b, loc, v); };
  auto idx = [&](int64_t v) { return OpFoldResult(b.getIndexAttr(v)); };
  AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1), d2 = b.getAffineDimExpr(2);
  float lowest = -std::numeric_limits<float>::max(),
        negInf = -std::numeric_limits<float>::infinity();

  Value tokens = tensor::DimOp::create(b, loc, a.queries.front(), 0);
  Value queryBlocks = arith::CeilDivUIOp::create(b, loc, tokens, cst(queryBlock));
  Value pairs = arith::MulIOp::create(b, loc, queryBlocks, cst(kvHeads));
  // splits = max(1, min(ceil(len / split_keys), ceil(work_items /
  // pairs))) (no pairs: no tokens, no items). min_split_keys is a split's
  // least keys for one head; the group's heads all read a split's keys, so
  // it needs 1 / group as many (at least a key block): absorbed MLA's one
  // group of every head, whose decode would otherwise be one work item
  // below 256 keys.
  int64_t splitKeys = std::max(keyBlock, config.getMinSplitKeys() / group);
  Value splits = arith::MaxUIOp::create(
      b, loc, cst(1),
      arith::MinUIOp::create(
          b, loc, arith::CeilDivUIOp::create(b, loc, a.len, cst(splitKeys)),
          arith::CeilDivUIOp::create(b, loc, cst(config.getWorkItems()),
                                     arith::MaxUIOp::create(b, loc, pairs, cst(1)))));
  Value items = arith::MulIOp::create(b, loc, pairs, splits);

  // Where the rows of (query block, KV head) pair `pair` are. Later query
  // blocks see more keys, and the thread pool splits the items into
  // contiguous runs, so pair order takes blocks from both ends (0, n-1, 1,
  // n-2, ...): every run gets a balanced share of a causal prefill.
  struct Block {
    Value g, t0, nt, rows, h0;
  };
  auto blockOf = [&](Value pair) {
    Value order = arith::DivUIOp::create(b, loc, pair, cst(kvHeads));
    Value half = arith::DivUIOp::create(b, loc, order, cst(2));
    Value odd = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne,
                                      arith::RemUIOp::create(b, loc, order, cst(2)), cst(0));
    Value fromEnd = arith::SubIOp::create(
        b, loc, arith::SubIOp::create(b, loc, queryBlocks, cst(1)), half);
    Value qb = arith::SelectOp::create(b, loc, odd, fromEnd, half);
    Block k;
    k.g = arith::RemUIOp::create(b, loc, pair, cst(kvHeads));
    k.t0 = arith::MulIOp::create(b, loc, qb, cst(queryBlock));
    k.nt = arith::MinUIOp::create(b, loc, cst(queryBlock), arith::SubIOp::create(b, loc, tokens, k.t0));
    k.rows = arith::MulIOp::create(b, loc, k.nt, cst(group));
    k.h0 = arith::MulIOp::create(b, loc, k.g, cst(group));
    return k;
  };

  // Each item's partial result: output, running maximum and sum per row.
  Value partAcc0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{items, idx(rowsMax), idx(dv)}, f32);
  Value partMax0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{items, idx(rowsMax)}, f32);
  Value partSum0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{items, idx(rowsMax)}, f32);
  auto attend = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{items},
                                      ValueRange{partAcc0, partMax0, partSum0}, std::nullopt);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(attend.getBody());
    Value item = attend.getInductionVars()[0];
    Value split = arith::RemUIOp::create(b, loc, item, splits);
    Block k = blockOf(arith::DivUIOp::create(b, loc, item, splits));

    // The block's queries of the group's heads, times the softmax scale, as
    // rows t * group + h of one [rows, d] operand per part.
    SmallVector<Value> queries;
    for (Value q : a.queries) {
      auto type = cast<RankedTensorType>(q.getType());
      int64_t d = type.getDimSize(2);
      Value block = slice(b, loc, RankedTensorType::get({dyn, group, d}, type.getElementType()), q,
                          {k.t0, k.h0, idx(0)}, {k.nt, idx(group), idx(d)});
      Value scaled = elementwise(
          b, loc, block, tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{k.nt, idx(group), idx(d)}, f32),
          {{d0, d1, d2}, {d0, d1, d2}}, 3, [&](OpBuilder &b, Location loc, ValueRange v) {
            return arith::MulFOp::create(b, loc, toF32(b, loc, v[0]), f32Const(b, loc, a.scale));
          });
      queries.push_back(tensor::CollapseShapeOp::create(b, loc, scaled,
                                                        ArrayRef<ReassociationIndices>{{0, 1}, {2}}));
    }

    // The keys the block's queries see: [lo, hi) with hi = max position + 1
    // (at most len) and, with a sliding window, lo = the key block
    // holding min position - window + 1.
    auto posType = cast<RankedTensorType>(a.positions.getType());
    Value positions = slice(b, loc, RankedTensorType::get({dyn}, posType.getElementType()),
                            a.positions, {k.t0}, {k.nt});
    auto span = scf::ForOp::create(
        b, loc, cst(0), k.nt, cst(1),
        ValueRange{i64Const(b, loc, std::numeric_limits<int64_t>::max()),
                   i64Const(b, loc, std::numeric_limits<int64_t>::min())},
        [&](OpBuilder &b, Location loc, Value t, ValueRange acc) {
          Value p = toI64(b, loc, tensor::ExtractOp::create(b, loc, positions, t));
          scf::YieldOp::create(b, loc, ValueRange{arith::MinSIOp::create(b, loc, acc[0], p),
                                                  arith::MaxSIOp::create(b, loc, acc[1], p)});
        });
    // (Clamped at 0: positions are not checked to be non-negative, and a
    // negative bound must not make the unsigned block arithmetic wrap.)
    Value hi = arith::MaxSIOp::create(
        b, loc, cst(0),
        arith::MinSIOp::create(
            b, loc, a.len,
            arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                       arith::AddIOp::create(b, loc, span.getResult(1), i64Const(b, loc, 1)))));
    Value lo = cst(0);
    if (a.window) {
      Value first = arith::MaxSIOp::create(
          b, loc, arith::SubIOp::create(b, loc, span.getResult(0), i64Const(b, loc, *a.window - 1)),
          i64Const(b, loc, 0));
      lo = arith::MulIOp::create(
          b, loc,
          arith::DivUIOp::create(b, loc, arith::IndexCastOp::create(b, loc, b.getIndexType(), first),
                                 cst(keyBlock)),
          cst(keyBlock));
      lo = arith::MinSIOp::create(b, loc, lo, hi);
    }
    // This item's split: a contiguous run of whole key blocks.
    Value perSplit = arith::MulIOp::create(
        b, loc,
        arith::CeilDivUIOp::create(
            b, loc, arith::CeilDivUIOp::create(b, loc, arith::SubIOp::create(b, loc, hi, lo), cst(keyBlock)),
            splits),
        cst(keyBlock));
    Value first = arith::MinUIOp::create(
        b, loc, hi, arith::AddIOp::create(b, loc, lo, arith::MulIOp::create(b, loc, split, perSplit)));
    Value last = arith::MinUIOp::create(b, loc, hi, arith::AddIOp::create(b, loc, first, perSplit));

    auto rowVector = [&](OpBuilder &b, Location loc, double value) {
      return filled(b, loc, {k.rows}, f32, value);
    };
    Value acc0 = filled(b, loc, {k.rows, idx(dv)}, f32, 0.0);
    // The running maximum starts at the lowest finite float: a block whose
    // keys a row cannot see leaves it there and exp(-inf - m) = 0, never
    // exp(-inf + inf).
    Value max0 = rowVector(b, loc, lowest), sum0 = rowVector(b, loc, 0.0);
    auto blocks = scf::ForOp::create(
        b, loc, first, last, cst(keyBlock), ValueRange{acc0, max0, sum0},
        [&](OpBuilder &b, Location loc, Value s0, ValueRange state) {
          Value acc = state[0], mOld = state[1], lOld = state[2];
          Value nk = arith::MinUIOp::create(b, loc, cst(keyBlock),
                                            arith::SubIOp::create(b, loc, last, s0));
          // The block's rows of a cache: [nk, d] of its KV head (or shared).
          auto rowsOf = [&](const CacheRows &c) {
            auto type = cast<RankedTensorType>(c.values.getType());
            int64_t d = type.getShape().back();
            auto blockType = RankedTensorType::get({dyn, d}, type.getElementType());
            if (perHead(c))
              return slice(b, loc, blockType, c.values, {s0, k.g, idx(0)}, {nk, idx(1), idx(d)});
            return slice(b, loc, blockType, c.values, {s0, idx(0)}, {nk, idx(d)});
          };
          auto scalesOf = [&](const CacheRows &c) {
            auto type = RankedTensorType::get({dyn}, f32);
            if (perHead(c))
              return slice(b, loc, type, c.scales, {s0, k.g}, {nk, idx(1)});
            return slice(b, loc, type, c.scales, {s0}, {nk});
          };
          // The block of a cache as the kernels read it, shared where keys
          // and values are one cache (absorbed MLA). An FP8 block is
          // dequantized once into f32: CPUs convert E4M3 in several integer
          // steps, and every tile of 4 rows would convert it again (4-layer
          // DeepSeek-shaped cut, decode at 4096: 143 -> 160 tok/s). int8
          // converts in one instruction: the kernels read it as stored (once
          // converted, 170 -> 156).
          llvm::SmallDenseMap<Value, CacheRows> seen;
          auto blockOf = [&](const CacheRows &c) {
            auto it = seen.find(c.values);
            if (it != seen.end())
              return it->second;
            CacheRows block{rowsOf(c), c.scales ? scalesOf(c) : Value()};
            if (block.scales &&
                isa<FloatType>(getElementTypeOrSelf(block.values.getType())) &&
                getElementTypeOrSelf(block.values.getType()).getIntOrFloatBitWidth() == 8)
              block = {elementwise(b, loc, ValueRange{block.values, block.scales},
                                   tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, block.values), f32),
                                   {{d0, d1}, {d0}, {d0, d1}}, 2, [](OpBuilder &b, Location loc, ValueRange v) {
                         return arith::MulFOp::create(b, loc, toF32(b, loc, v[0]), v[1]);
                       }),
                       Value()};
            return seen[c.values] = block;
          };
          // Scores of the block: one kernel per part over (row, key); parts
          // without scales accumulate into one product.
          SmallVector<Value> products, scales;
          Value unscaled;
          for (auto [q, key] : llvm::zip(queries, a.keys)) {
            CacheRows block = blockOf(key);
            if (block.scales) {
              products.push_back(markKernel(rowContraction(b, loc, q, block.values,
                                                           filled(b, loc, {k.rows, nk}, f32, 0.0))));
              scales.push_back(block.scales);
              continue;
            }
            unscaled = markKernel(rowContraction(
                b, loc, q, block.values, unscaled ? unscaled : filled(b, loc, {k.rows, nk}, f32, 0.0)));
          }
          // Masked (future keys, keys outside the window), each quantized
          // part times its key rows' scales.
          SmallVector<Value> inputs = {positions};
          SmallVector<SmallVector<AffineExpr>> maps = {{d0.floorDiv(group)}};
          if (unscaled) {
            inputs.push_back(unscaled);
            maps.push_back({d0, d1});
          }
          for (auto [product, scale] : llvm::zip(products, scales)) {
            inputs.append({product, scale});
            maps.append({{d0, d1}, {d1}});
          }
          maps.push_back({d0, d1});
          Value masked = elementwise(
              b, loc, inputs, tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{k.rows, nk}, f32), maps,
              2, [&](OpBuilder &b, Location loc, ValueRange v) {
                Value key = arith::AddIOp::create(b, loc, s0, linalg::IndexOp::create(b, loc, 1));
                Value hidden = keyHidden(b, loc, key, v[0], a.window);
                unsigned next = 1;
                Value score = unscaled ? v[next++] : f32Const(b, loc, 0.0);
                for (size_t i = 0; i < products.size(); ++i, next += 2)
                  score = arith::AddFOp::create(b, loc, score,
                                                arith::MulFOp::create(b, loc, v[next], v[next + 1]));
                return arith::SelectOp::create(b, loc, hidden, f32Const(b, loc, negInf), score);
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
              ValueRange{mOld, tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{k.rows}, f32)},
              SmallVector<AffineMap>(3, AffineMap::getMultiDimIdentityMap(1, b.getContext())),
              SmallVector<utils::IteratorType>{par}, [](OpBuilder &b, Location loc, ValueRange v) {
                Value mNew = arith::MaximumFOp::create(b, loc, v[0], v[1]);
                Value d = arith::SubFOp::create(b, loc, v[1], mNew);
                linalg::YieldOp::create(b, loc, ValueRange{mNew, math::ExpOp::create(b, loc, d)});
              });
          Value mNew = update.getResult(0), alpha = update.getResult(1);
          Value probs = elementwise(
              b, loc, ValueRange{masked, mNew},
              tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{k.rows, nk}, f32),
              {{d0, d1}, {d0}, {d0, d1}}, 2, [](OpBuilder &b, Location loc, ValueRange v) {
                return math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, v[0], v[1]));
              });
          // l_new = alpha * l_old + sum of the block's row (in place).
          Value lScaled = elementwise(b, loc, ValueRange{alpha}, lOld, {{d0}, {d0}}, 1,
                                      [](OpBuilder &b, Location loc, ValueRange v) {
            return arith::MulFOp::create(b, loc, v[1], v[0]);
          });
          Value lNew = reduceRows(b, loc, probs, lScaled, [](OpBuilder &b, Location loc, Value p, Value l) {
            return arith::AddFOp::create(b, loc, p, l).getResult();
          });
          // The value rows' scales of a quantized cache weight the
          // probabilities (after their sum).
          Value weights = probs;
          CacheRows valueBlock = blockOf(a.values);
          if (valueBlock.scales)
            weights = elementwise(b, loc, ValueRange{probs, valueBlock.scales},
                                  tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{k.rows, nk}, f32),
                                  {{d0, d1}, {d1}, {d0, d1}}, 2, [](OpBuilder &b, Location loc, ValueRange v) {
              return arith::MulFOp::create(b, loc, v[0], v[1]);
            });
          // acc = alpha * acc + weights . V (the outer-product kernel: value
          // rows contiguous).
          Value rescaled = elementwise(b, loc, ValueRange{alpha}, acc, {{d0}, {d0, d1}}, 2,
                                       [](OpBuilder &b, Location loc, ValueRange v) {
            return arith::MulFOp::create(b, loc, v[1], v[0]);
          });
          Value accNew = markKernel(generic(b, loc, ValueRange{weights, valueBlock.values}, rescaled,
                                            {{d0, d2}, {d2, d1}, {d0, d1}}, {par, par, red},
                                            multiplyAccumulate));
          scf::YieldOp::create(b, loc, ValueRange{accNew, mNew, lNew});
        });
    parallelInsert(b, loc, attend, blocks.getResult(0), attend.getRegionIterArgs()[0],
                   {item, idx(0), idx(0)}, {idx(1), k.rows, idx(dv)});
    parallelInsert(b, loc, attend, blocks.getResult(1), attend.getRegionIterArgs()[1],
                   {item, idx(0)}, {idx(1), k.rows});
    parallelInsert(b, loc, attend, blocks.getResult(2), attend.getRegionIterArgs()[2],
                   {item, idx(0)}, {idx(1), k.rows});
  }

  // Each (query block, KV head): its splits weighted by exp(m_split - m),
  // m the maximum over the splits, then divided by the weighted sums.
  Value out0 = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{tokens, idx(heads), idx(dv)}, f32);
  auto combine = scf::ForallOp::create(b, loc, ArrayRef<OpFoldResult>{pairs}, ValueRange{out0},
                                       std::nullopt);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(combine.getBody());
    Value pair = combine.getInductionVars()[0];
    Block k = blockOf(pair);
    Value firstItem = arith::MulIOp::create(b, loc, pair, splits);
    Value acc = slice(b, loc, RankedTensorType::get({dyn, dyn, dv}, f32), attend.getResult(0),
                      {firstItem, idx(0), idx(0)}, {splits, k.rows, idx(dv)});
    auto rowSlice = [&](Value t) {
      return slice(b, loc, RankedTensorType::get({dyn, dyn}, f32), t, {firstItem, idx(0)},
                   {splits, k.rows});
    };
    Value maxima = rowSlice(attend.getResult(1)), sums = rowSlice(attend.getResult(2));
    // Loops (row, split): m = max over splits.
    Value m = generic(b, loc, maxima, filled(b, loc, {k.rows}, f32, lowest), {{d1, d0}, {d0}}, {par, red},
                      [](OpBuilder &b, Location loc, ValueRange v) {
      linalg::YieldOp::create(b, loc, arith::MaximumFOp::create(b, loc, v[0], v[1]).getResult());
    });
    Value w = elementwise(b, loc, ValueRange{maxima, m},
                          tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{splits, k.rows}, f32),
                          {{d0, d1}, {d1}, {d0, d1}}, 2, [](OpBuilder &b, Location loc, ValueRange v) {
      return math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, v[0], v[1]));
    });
    Value total = generic(b, loc, ValueRange{w, sums}, filled(b, loc, {k.rows}, f32, 0.0),
                          {{d1, d0}, {d1, d0}, {d0}}, {par, red},
                          [](OpBuilder &b, Location loc, ValueRange v) {
      Value p = arith::MulFOp::create(b, loc, v[0], v[1]);
      linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, v[2], p).getResult());
    });
    // Loops (row, split, column): the column innermost, contiguous.
    Value sum = generic(b, loc, ValueRange{w, acc}, filled(b, loc, {k.rows, idx(dv)}, f32, 0.0),
                        {{d1, d0}, {d1, d0, d2}, {d0, d2}}, {par, red, par},
                        [](OpBuilder &b, Location loc, ValueRange v) {
      Value p = arith::MulFOp::create(b, loc, v[0], v[1]);
      linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, v[2], p).getResult());
    });
    Value normalized = elementwise(
        b, loc, ValueRange{sum, total},
        tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{k.rows, idx(dv)}, f32),
        {{d0, d1}, {d0}, {d0, d1}}, 2, [](OpBuilder &b, Location loc, ValueRange v) {
          return arith::DivFOp::create(b, loc, v[0], v[1]);
        });
    Value result = tensor::ExpandShapeOp::create(
        b, loc, RankedTensorType::get({dyn, group, dv}, f32), normalized,
        ArrayRef<ReassociationIndices>{{0, 1}, {2}},
        ArrayRef<OpFoldResult>{k.nt, idx(group), idx(dv)});
    parallelInsert(b, loc, combine, result, combine.getRegionIterArgs()[0], {k.t0, k.h0, idx(0)},
                   {k.nt, idx(group), idx(dv)});
  }
  return combine.getResult(0);
}

} // namespace moir::lowering
