//===- ContractionKernels.cpp - register-blocked contraction kernels -------===//
//
// The projections and expert matmuls of a decoder compute
// C[m, n] += A[m, k] * W[n, k]: activations times weights stored one output
// row after another, as checkpoints store them. Lowered to plain loops, LLVM
// vectorizes the k reduction of one output at a time: every FMA needs a load
// of each operand, so the core waits on loads, not on its FMA units. Here
// each step of the k loop loads tile-m activation vectors and tile-n weight
// vectors and feeds tile-m * tile-n FMAs whose accumulators stay in
// registers, and the work is blocked over weight rows so each thread's
// weights stay in its L2 while every activation row passes over them.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/CPU/CPUTarget.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/AMX/AMXDialect.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/IR/AffineMap.h"

#include <map>

namespace moir {
#define GEN_PASS_DEF_CPUCONTRACTIONKERNELSPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// The value `v` with an optional arith.extf (or arith.sitofp, int8
/// storage) looked through.
Value stripExt(Value v) {
  if (auto ext = v.getDefiningOp<arith::ExtFOp>())
    return ext.getIn();
  if (auto conv = v.getDefiningOp<arith::SIToFPOp>())
    return conv.getIn();
  return v;
}

bool unitInnerStride(Type type) {
  auto memref = dyn_cast<MemRefType>(type);
  if (!memref || memref.getRank() != 2)
    return false;
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(memref.getStridesAndOffset(strides, offset)))
    return false;
  return strides.back() == 1;
}

/// Whether `op`'s body is yield(addf(mulf(ext?(a), ext?(w)), acc)), in
/// either operand order, on f32 activations and result and f32/bf16/f16
/// weights, over buffers.
bool isMultiplyAccumulate(linalg::GenericOp op) {
  if (!op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1)
    return false;
  Value a = op.getDpsInputs()[0], w = op.getDpsInputs()[1], c = op.getDpsInits()[0];
  Type wElem = getElementTypeOrSelf(w.getType());
  // Weights in f32/bf16/f16, or a quantized KV cache's storage (int8, FP8
  // E4M3) whose row scales the lowering applies outside the product.
  if (!getElementTypeOrSelf(a.getType()).isF32() || !getElementTypeOrSelf(c.getType()).isF32() ||
      !(wElem.isF32() || wElem.isBF16() || wElem.isF16() || wElem.isSignlessInteger(8) ||
        isa<Float8E4M3FNType>(wElem)))
    return false;
  Block &body = op.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getValues()[0].getDefiningOp<arith::AddFOp>();
  if (!add)
    return false;
  Value acc = body.getArgument(2);
  Value product = add.getLhs() == acc ? add.getRhs() : add.getLhs();
  if ((add.getLhs() == acc) == (add.getRhs() == acc))
    return false;
  auto mul = product.getDefiningOp<arith::MulFOp>();
  if (!mul)
    return false;
  Value x = stripExt(mul.getLhs()), y = stripExt(mul.getRhs());
  Value argA = body.getArgument(0), argW = body.getArgument(1);
  if (!((x == argA && y == argW) || (x == argW && y == argA)))
    return false;
  // Nothing else in the body (the extfs, the multiply, the add, the yield).
  return llvm::all_of(body.without_terminator(), [&](Operation &inner) {
    return &inner == add.getOperation() || &inner == mul.getOperation() ||
           isa<arith::ExtFOp, arith::SIToFPOp>(inner);
  });
}

/// How one operand of a batched contraction is indexed: per result of its
/// map, the loop it runs along (-1: a function of the batch loop only).
/// Loops: 0 = m, 1 = batch, 2 = n, 3 = k.
std::optional<SmallVector<int>> operandLayout(AffineMap map, ArrayRef<int> kept) {
  MLIRContext *ctx = map.getContext();
  SmallVector<int> roles;
  for (AffineExpr e : map.getResults()) {
    int role = -1;
    for (int loop : {0, 2, 3}) {
      if (!e.isFunctionOfDim(loop))
        continue;
      // e must be loop + f(batch).
      AffineExpr rest = e - getAffineDimExpr(loop, ctx);
      rest = simplifyAffineExpr(rest, 4, 0);
      if (rest.isFunctionOfDim(0) || rest.isFunctionOfDim(2) || rest.isFunctionOfDim(3) ||
          role != -1)
        return std::nullopt;
      role = loop;
    }
    roles.push_back(role);
  }
  SmallVector<int> order;
  for (int r : roles)
    if (r != -1)
      order.push_back(r);
  if (order != SmallVector<int>(kept.begin(), kept.end()))
    return std::nullopt;
  return roles;
}

/// The 2-D layout the kernels need:
/// - Plain: loops (m, n, k), C[m, n] += A[m, k] * W[n, k], k contiguous in A
///   and W (projections, expert matmuls: weights stored output-major);
/// - Batched: loops (m, b, n, k), the same per b, every operand's other
///   dimensions a function of b alone (attention scores per head,
///   Q[t, h, :] . K[s, h / group, :]; MLA's per-head output projection);
/// - Outer: loops (m, b, k, n) or (m, b, n, k), C[m, n] += A[m, k] * W[k, n]
///   per b with n contiguous in W and C (attention's weighted sums of value
///   rows; MLA's query absorption, W_UK stored [n, c] per head);
/// - Outer2D: loops (m, n, k), the same without a batch (absorbed MLA's sum
///   of latent rows over every head at once: the cache is read once, not
///   once per head).
enum class Form { None, Plain, Batched, Outer, Outer2D, Packed };

/// Whether the last result of `map` is loop `loop` and `v`'s last dimension
/// has unit stride.
bool contiguousAlong(AffineMap map, Value v, int loop) {
  auto type = dyn_cast<MemRefType>(v.getType());
  if (!type || map.getResults().back() != getAffineDimExpr(loop, map.getContext()))
    return false;
  SmallVector<int64_t> strides;
  int64_t offset;
  return succeeded(type.getStridesAndOffset(strides, offset)) && strides.back() == 1;
}

/// A contraction over a packed quantized weight (moir.packed, set by the
/// lowering): C[m, n] += A[m, k] * (scale[n, k / G] * code(data[n, .]) +
/// offset[n, k / G]) with loops (m, n, k) on buffers, A and the codes unit
/// stride along k.
/// The storage ("u4", "i8", "f8e4m3"), group and superblock scales (":k")
/// of a moir.packed form "storage:group[:k]" (group 0 when it does not
/// parse).
struct PackedForm {
  StringRef storage;
  int64_t group = 0;
  bool superblocks = false;
};

PackedForm packedForm(linalg::GenericOp op) {
  auto form = op->getAttrOfType<StringAttr>(moir::attrs::packedName());
  if (!form)
    return {};
  SmallVector<StringRef, 3> parts;
  form.getValue().split(parts, ':');
  PackedForm result;
  if (parts.size() < 2 || parts.size() > 3 || parts[1].getAsInteger(10, result.group) ||
      (parts.size() == 3 && parts[2] != "k"))
    return {};
  result.storage = parts[0];
  result.superblocks = parts.size() == 3;
  return result;
}

/// Whether a packed contraction's codes are indexed (k, n): C[m, n] +=
/// A[m, k] * W[k, n], a sum of the weight's rows (weightRowCombination),
/// not dot products along them.
bool combinesRows(linalg::GenericOp op) {
  AffineMap codes = op.getIndexingMapsArray()[1];
  return codes.getNumResults() == 2 && codes.getResult(0) == getAffineDimExpr(2, op.getContext());
}

bool isPackedContraction(linalg::GenericOp op, int64_t vectorWidth) {
  auto [storage, group, superblocks] = packedForm(op);
  if (!group || !op.hasPureBufferSemantics() || op.getNumDpsInits() != 1 ||
      op.getNumLoops() != 3)
    return false;
  // Inputs: activations, codes, then the scales once per element read per
  // part (scale, offset): the number, or the f16's two bytes and the
  // group's byte (superblocks).
  int64_t perPart = superblocks ? 3 : 1, scaleInputs = op.getNumDpsInputs() - 2;
  if (scaleInputs != perPart && scaleInputs != 2 * perPart)
    return false;
  int64_t parts = scaleInputs / perPart;
  if (group % vectorWidth != 0 ||
      (storage == "u4" && (group != 32 || 16 % vectorWidth != 0)) ||
      (superblocks && 256 % group != 0))
    return false;
  Value a = op.getDpsInputs()[0], data = op.getDpsInputs()[1], c = op.getDpsInits()[0];
  auto scales = dyn_cast<MemRefType>(op.getDpsInputs()[2].getType());
  SmallVector<int64_t> strides;
  int64_t offset;
  if (!scales || scales.getRank() != 3 || !getElementTypeOrSelf(a.getType()).isF32())
    return false;
  // The row combination (combinesRows) writes C along the codes' rows.
  if (combinesRows(op) && !unitInnerStride(c.getType()))
    return false;
  Type elem = scales.getElementType();
  bool layoutOk = superblocks ? elem.isInteger(8) &&
                                    scales.getShape().back() == parts * (2 + 256 / group)
                              : (elem.isF32() || elem.isF16()) && scales.getShape().back() == parts;
  return layoutOk && unitInnerStride(a.getType()) && unitInnerStride(data.getType()) &&
         isa<MemRefType>(c.getType()) &&
         succeeded(scales.getStridesAndOffset(strides, offset)) && strides.back() == 1;
}

Form classify(linalg::GenericOp op) {
  if (!isMultiplyAccumulate(op))
    return Form::None;
  auto iterators = op.getIteratorTypesArray();
  auto maps = op.getIndexingMapsArray();
  MLIRContext *ctx = op.getContext();
  using utils::IteratorType;
  Value a = op.getDpsInputs()[0], w = op.getDpsInputs()[1], c = op.getDpsInits()[0];
  if (iterators.size() == 3) {
    AffineExpr m, n, k;
    bindDims(ctx, m, n, k);
    if (iterators[0] != IteratorType::parallel || iterators[1] != IteratorType::parallel ||
        iterators[2] != IteratorType::reduction || maps[0] != AffineMap::get(3, 0, {m, k}, ctx) ||
        maps[2] != AffineMap::get(3, 0, {m, n}, ctx))
      return Form::None;
    if (maps[1] == AffineMap::get(3, 0, {k, n}, ctx))
      return unitInnerStride(a.getType()) && unitInnerStride(w.getType()) &&
                     unitInnerStride(c.getType())
                 ? Form::Outer2D
                 : Form::None;
    if (maps[1] != AffineMap::get(3, 0, {n, k}, ctx))
      return Form::None;
    return unitInnerStride(a.getType()) && unitInnerStride(w.getType()) ? Form::Plain : Form::None;
  }
  if (iterators.size() != 4 || iterators[0] != IteratorType::parallel ||
      iterators[1] != IteratorType::parallel)
    return Form::None;
  // The reduction loop is k; the other of loops 2 and 3 is n.
  int k = iterators[3] == IteratorType::reduction ? 3 : 2;
  int n = 5 - k;
  if (iterators[k] != IteratorType::reduction || iterators[n] != IteratorType::parallel ||
      !operandLayout(maps[0], {0, k}) || !operandLayout(maps[2], {0, n}))
    return Form::None;
  // The batch indexes C directly, so batch items (the parallel work items)
  // write disjoint slices of C.
  if (!llvm::is_contained(maps[2].getResults(), getAffineDimExpr(1, ctx)))
    return Form::None;
  if (operandLayout(maps[1], {n, k}))
    return contiguousAlong(maps[0], a, k) && contiguousAlong(maps[1], w, k) ? Form::Batched
                                                                            : Form::None;
  if (operandLayout(maps[1], {k, n}))
    return contiguousAlong(maps[1], w, n) && contiguousAlong(maps[2], c, n) ? Form::Outer
                                                                            : Form::None;
  return Form::None;
}

/// Runs `body` over the work items [0, counts): as one scf.parallel (the
/// thread pool's work items) or, inside an enclosing parallel loop, as
/// sequential loops (the runtime's pool does not nest).
void forEachItem(OpBuilder &b, Location loc, ValueRange counts, bool parallel,
                 llvm::function_ref<void(ValueRange)> body) {
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  if (parallel) {
    SmallVector<Value> lbs(counts.size(), zero), steps(counts.size(), one);
    scf::ParallelOp::create(b, loc, lbs, counts, steps,
                            [&](OpBuilder &nested, Location, ValueRange ivs) {
                              OpBuilder::InsertionGuard guard(b);
                              b.setInsertionPointToStart(nested.getInsertionBlock());
                              body(ivs);
                            });
    return;
  }
  OpBuilder::InsertionGuard guard(b);
  SmallVector<Value> ivs;
  for (Value count : counts) {
    auto loop = scf::ForOp::create(b, loc, zero, count, one);
    b.setInsertionPointToStart(loop.getBody());
    ivs.push_back(loop.getInductionVar());
  }
  body(ivs);
}

/// AMX tiles: 16 rows of at most 64 bytes; 16 x 16 f32 or i32 sums.
constexpr int64_t kTileRows = 16, kTileArea = kTileRows * kTileRows;

/// The fewest work items a parallel product over weight rows is split
/// into where it has the rows for them (forEachRowBlock): 4, so that 2
/// or 4 threads share a small product evenly.
constexpr int64_t kMinItems = 4;

struct KernelShape {
  int64_t vectorWidth, tileM, tileN, blockN;
  bool bf16Dot;
  /// The broadcast kernel's products on AMX tiles (tdpbf16ps) where the
  /// depth is whole tiles.
  bool amx = false;
  /// The decode kernel's int8 activations carry residual codes (16-bit
  /// activations: RowCodes).
  bool residualDecode = false;
  /// Bytes of weights ahead the packed decode tiles prefetch (whole tiles).
  int64_t prefetchBytes = 4096;
};

/// The cache level the weight kernels' software prefetches fill at 8 and
/// 16 lanes (x86's AVX and AVX-512): 2 (prefetcht1, into L2), not 3
/// (prefetcht0, into L1 as well). The weights stream once through each
/// core; the L1's fill buffers bound a core's misses in flight, and lines
/// bound for L1 hold them longer. A microbenchmark of the Q8_0 decode loop
/// on this machine (2 cores, 31 GB/s read): 11-12 -> 12-13 GB/s on one
/// core, 22-23 -> 25-26 on two. 4 lanes (NEON, SSE) keep 3: unmeasured.
int32_t weightPrefetchLocality(int64_t vectorWidth) { return vectorWidth >= 8 ? 2 : 3; }
int32_t weightPrefetchLocality(const KernelShape &shape) {
  return weightPrefetchLocality(shape.vectorWidth);
}

/// What both kernel builders emit with: index constants, loops, f32 of a
/// scalar or vector.
class LoopBuilder {
protected:
  LoopBuilder(OpBuilder &b, Location loc) : b(b), loc(loc) {}

  /// Rows [r0, r0 + count) of the 2-D buffer `v`.
  Value rowSlice(Value v, Value r0, Value count) {
    OpFoldResult width = memref::getMixedSize(b, loc, v, 1);
    return memref::SubViewOp::create(b, loc, v, ArrayRef<OpFoldResult>{r0, b.getIndexAttr(0)},
                                     ArrayRef<OpFoldResult>{count, width},
                                     ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
  }

  /// For a product over rows [first, first + rows) of activations laid out
  /// in groups of `vw` rows (one per lane; at least a group of rows): its
  /// rows [0, start) where its first group holds fewer than half a group of
  /// them (else start = 0), and [end, rows) where its last group does (else
  /// end = rows). Rows [start, end) are whole groups or at least half of
  /// one at either end.
  struct ShortGroups {
    Value start, end;
  };
  ShortGroups shortGroups(Value first, Value rows, int64_t vw) {
    Value zero = cst(0), half = cst(vw / 2);
    auto ult = [&](Value x, Value y) {
      return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, x, y).getResult();
    };
    auto shortOf = [&](Value count) {
      return arith::AndIOp::create(b, loc, ult(zero, count), ult(count, half)).getResult();
    };
    Value headRows = arith::MinUIOp::create(
        b, loc,
        arith::RemUIOp::create(
            b, loc, arith::SubIOp::create(b, loc, cst(vw), arith::RemUIOp::create(b, loc, first, cst(vw))),
            cst(vw)),
        rows);
    Value tailRows = arith::RemUIOp::create(b, loc, arith::AddIOp::create(b, loc, first, rows), cst(vw));
    ShortGroups s;
    s.start = arith::SelectOp::create(b, loc, shortOf(headRows), headRows, zero);
    s.end = arith::SelectOp::create(b, loc, shortOf(tailRows),
                                    arith::SubIOp::create(b, loc, rows, tailRows), rows);
    return s;
  }

  /// body(r0, count) for the short first group's rows [0, start) and the
  /// short last group's [end, rows), where there are any: one loop of two
  /// steps, so the body's kernel is built once.
  void forShortGroups(const ShortGroups &s, Value rows,
                      llvm::function_ref<void(Value, Value)> body) {
    forLoop(cst(0), cst(2), cst(1), [&](Value step) {
      Value last = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, step, cst(1));
      Value r0 = arith::SelectOp::create(b, loc, last, s.end, cst(0));
      Value count = arith::SelectOp::create(b, loc, last, arith::SubIOp::create(b, loc, rows, s.end),
                                            s.start);
      auto any = scf::IfOp::create(
          b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt, count, cst(0)),
          /*withElseRegion=*/false);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(any.thenBlock());
      body(r0, count);
    });
  }

  Value cst(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }

  /// start, start + step, ..., start + (count - 1) * step: a tile's rows or
  /// columns.
  SmallVector<Value> indices(Value start, int64_t count, int64_t step = 1) {
    SmallVector<Value> result;
    for (int64_t i = 0; i < count; ++i)
      result.push_back(i ? arith::AddIOp::create(b, loc, start, cst(i * step)).getResult() : start);
    return result;
  }

  void forLoop(Value lo, Value hi, Value step, llvm::function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b, loc, lo, hi, step);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    body(loop.getInductionVar());
  }

  /// Prefetches `bytes` of `buffer` (2-D, `rows` rows of `rowBytes` bytes,
  /// elements of `elemBytes`) from byte `from` on, a line at a time into
  /// `locality`. Each line is clamped to the buffer's last byte before it
  /// is split into (row, element): LLVM then folds the index back into the
  /// one clamped offset (clamping the row instead kept a shift, a mask and
  /// a multiply per step in Q8_0's decode loop).
  void prefetchSpan(Value buffer, Value rows, int64_t rowBytes, int64_t elemBytes, Value from,
                    int64_t bytes, int32_t locality) {
    Value lastByte =
        arith::SubIOp::create(b, loc, arith::MulIOp::create(b, loc, rows, cst(rowBytes)), cst(1));
    for (int64_t at = 0; at < bytes; at += 64) {
      Value byte =
          arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, from, cst(at)), lastByte);
      Value row = arith::DivUIOp::create(b, loc, byte, cst(rowBytes));
      Value elem = arith::RemUIOp::create(b, loc, byte, cst(rowBytes));
      if (elemBytes > 1)
        elem = arith::DivUIOp::create(b, loc, elem, cst(elemBytes));
      memref::PrefetchOp::create(b, loc, buffer, ValueRange{row, elem}, /*isWrite=*/false,
                                 /*localityHint=*/locality, /*isDataCache=*/true);
    }
  }

  /// Where step k of an outer-product tile prefetches: tiles walk every
  /// row k < depth for one block of `blockCols` columns from `firstCol`,
  /// a row's whole bytes apart, which the hardware prefetchers do not
  /// follow. So: row k of the next block of columns (a whole pass over
  /// the rows ahead) while there is one, in the last block its own
  /// columns `ahead` rows on (clamped to the last row). The result is
  /// (row, first column).
  std::pair<Value, Value> nextBlockPrefetch(Value k, Value firstCol, int64_t blockCols,
                                            Value cols, Value depth, int64_t ahead) {
    Value later = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, k, cst(ahead)),
                                         arith::SubIOp::create(b, loc, depth, cst(1)));
    Value nextCol = arith::AddIOp::create(b, loc, firstCol, cst(blockCols));
    Value hasNext = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, nextCol, cols);
    return {arith::SelectOp::create(b, loc, hasNext, k, later),
            arith::SelectOp::create(b, loc, hasNext, nextCol, firstCol)};
  }

  /// Prefetches `span` elements of row `row` of `buffer` from element
  /// `first` on, a line (`lineElems` elements) at a time, each line's
  /// element clamped to `last` (a partial block ends early).
  void prefetchAlongRow(Value buffer, Value row, Value first, Value last, int64_t span,
                        int64_t lineElems, int32_t locality) {
    for (int64_t at = 0; at < span; at += lineElems) {
      Value elem =
          at ? arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, first, cst(at)), last)
                   .getResult()
             : first;
      memref::PrefetchOp::create(b, loc, buffer, ValueRange{row, elem}, /*isWrite=*/false,
                                 /*localityHint=*/locality, /*isDataCache=*/true);
    }
  }

  /// The outer-product tile: C[r[i], q[j] .. q[j] + vw) += sum_{k < depth}
  /// A[r[i], k] * (step k's weight vector j), the r.size() x q.size()
  /// accumulators in registers through the k loop; each step broadcasts
  /// the rows' activations against the vectors `weightsAt(k)` emits (f32,
  /// one per q).
  /// With `factorsAt`, step k's vector j is weightsAt(k)[j] times
  /// factorsAt(k)[j], multiplied into the broadcast activation rather than
  /// the weights (fewer products where one row shares a factor across
  /// vectors: the row combination's scales at one activation row).
  void outerProductTile(Value a, Value c, Value depth, ArrayRef<Value> r, ArrayRef<Value> q,
                        int64_t vw, llvm::function_ref<SmallVector<Value>(Value)> weightsAt,
                        llvm::function_ref<SmallVector<Value>(Value)> factorsAt = nullptr) {
    auto vecType = VectorType::get({vw}, b.getF32Type());
    Value zeros = arith::ConstantOp::create(b, loc, vecType, DenseElementsAttr::get(vecType, 0.0f));
    int64_t tm = r.size(), nv = q.size();
    SmallVector<Value> inits(tm * nv, zeros);
    auto loop = scf::ForOp::create(
        b, loc, cst(0), depth, cst(1), inits,
        [&](OpBuilder &nb, Location, Value k, ValueRange accs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          SmallVector<Value> ws = weightsAt(k), next;
          SmallVector<Value> factors = factorsAt ? factorsAt(k) : SmallVector<Value>();
          for (int64_t i = 0; i < tm; ++i) {
            Value x = memref::LoadOp::create(b, loc, a, ValueRange{r[i], k});
            Value xs = vector::BroadcastOp::create(b, loc, vecType, x);
            // (Vectors of one group load the same factor: LLVM keeps one
            // load and one product.)
            for (int64_t j = 0; j < nv; ++j) {
              Value xj = factors.empty() ? xs
                                         : arith::MulFOp::create(b, loc, xs, factors[j]).getResult();
              next.push_back(vector::FMAOp::create(b, loc, xj, ws[j], accs[i * nv + j]).getResult());
            }
          }
          scf::YieldOp::create(b, loc, next);
        });
    for (int64_t i = 0; i < tm; ++i)
      for (int64_t j = 0; j < nv; ++j) {
        Value old = vector::LoadOp::create(b, loc, vecType, c, ValueRange{r[i], q[j]});
        Value sum = arith::AddFOp::create(b, loc, old, loop.getResult(i * nv + j));
        vector::StoreOp::create(b, loc, sum, c, ValueRange{r[i], q[j]});
      }
  }

  Value toF32(Value v) {
    Type elem = getElementTypeOrSelf(v.getType());
    if (elem.isF32())
      return v;
    Type f32 = b.getF32Type();
    if (auto vec = dyn_cast<VectorType>(v.getType()))
      f32 = VectorType::get(vec.getShape(), f32);
    if (elem.isSignlessInteger())
      return arith::SIToFPOp::create(b, loc, f32, v);
    return arith::ExtFOp::create(b, loc, f32, v);
  }

  /// C[m, n] over `rows` x `cols` by the weight-row kernels' schedule: work
  /// items of shape.blockN weight rows (so each thread's weights stay in
  /// its L2), inside each tiles of tileM x tileN outputs, then 1-wide edge
  /// tiles for the rows and columns left over; `tile(tm, tn, m0, n0)`
  /// builds one tile.
  /// (The int8 kernel sweeps groups of rows, `tileM` of them per tile.)
  void sweepRowBlocks(Value rows, Value cols, const KernelShape &shape, bool parallel,
                      llvm::function_ref<void(int64_t, int64_t, Value, Value)> tile) {
    sweepRowBlocks(rows, cols, shape.tileM, shape, parallel, tile);
  }
  void sweepRowBlocks(Value rows, Value cols, int64_t tileM, const KernelShape &shape,
                      bool parallel, llvm::function_ref<void(int64_t, int64_t, Value, Value)> tile) {
    Value zero = cst(0), one = cst(1);
    forEachRowBlock(cols, shape.blockN, shape.tileN, parallel, [&](Value lo, Value hi) {
      Value full = wholeSteps(lo, hi, shape.tileN);
      Value mFull = arith::MulIOp::create(
          b, loc, arith::DivUIOp::create(b, loc, rows, cst(tileM)), cst(tileM));
      auto sweep = [&](int64_t tm, Value m0) {
        forLoop(lo, full, cst(shape.tileN), [&](Value n0) { tile(tm, shape.tileN, m0, n0); });
        forLoop(full, hi, one, [&](Value n0) { tile(tm, 1, m0, n0); });
      };
      forLoop(zero, mFull, cst(tileM), [&](Value m0) { sweep(tileM, m0); });
      forLoop(mFull, rows, one, [&](Value m0) { sweep(1, m0); });
    });
  }

  /// Work items over `cols` weight rows, `block` of them each (the last
  /// one fewer): body(lo, hi) for rows [lo, hi). A parallel product of
  /// fewer than kMinItems * `block` rows (the MoE router's 64 experts
  /// were one work item, so one thread) takes smaller items, in whole
  /// steps of `granule` rows (the kernel's tile), so that it still makes
  /// kMinItems of them where it has that many granules.
  void forEachRowBlock(Value cols, int64_t block, int64_t granule, bool parallel,
                       llvm::function_ref<void(Value, Value)> body) {
    Value size = cst(block);
    if (parallel && granule < block) {
      Value share = arith::CeilDivUIOp::create(b, loc, cols, cst(kMinItems * granule));
      Value even = arith::MulIOp::create(b, loc, share, cst(granule));
      size = arith::MinUIOp::create(b, loc, size, even);
    }
    forEachRowBlock(cols, size, parallel, body);
  }
  void forEachRowBlock(Value cols, Value block, bool parallel,
                       llvm::function_ref<void(Value, Value)> body) {
    Value blocks = arith::CeilDivUIOp::create(b, loc, cols, block);
    forEachItem(b, loc, ValueRange{blocks}, parallel, [&](ValueRange ivs) {
      Value lo = arith::MulIOp::create(b, loc, ivs[0], block);
      Value hi = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, lo, block), cols);
      body(lo, hi);
    });
  }

  /// `from` plus the whole steps of `step` that fit before `hi`: where the
  /// tiles of `step` rows of [from, hi) end.
  Value wholeSteps(Value from, Value hi, int64_t step) {
    Value span = arith::SubIOp::create(b, loc, hi, from);
    return arith::AddIOp::create(
        b, loc, from,
        arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, span, cst(step)), cst(step)));
  }

  /// Weight row `row + tn`, the same row of the next tile, clamped to the
  /// last of `count` rows (a prefetch address stays inside the buffer).
  Value nextRow(Value row, int64_t tn, Value count) {
    return arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, row, cst(tn)),
                                  arith::SubIOp::create(b, loc, count, cst(1)));
  }

  /// The lane sums of a tile's accumulators `accs` (tm * tn vectors of one
  /// width, row-major), as one vector of tn sums per row. Pairs of vectors
  /// fold by two-source shuffles: each result lane adds a lane of the
  /// first half of a segment to its partner in the second half, so one
  /// result holds half-width segments of both inputs (a transpose and add);
  /// once one vector is left, its segments fold in halves within it. For a
  /// 4x4 tile of 16 lanes that is 15 adds and 30 shuffles for the 16
  /// outputs, where a reduction per output costs 8 dependent operations
  /// (128): on the bf16 kernels of a 2816-deep product those reductions
  /// took about 45% of the kernel's samples. Counts or widths that are
  /// not powers of two take a reduction per output.
  SmallVector<Value> sumLanesByRow(ArrayRef<Value> accs, int64_t tm, int64_t tn) {
    auto fast = arith::FastMathFlags::reassoc | arith::FastMathFlags::contract;
    int64_t count = accs.size();
    auto width = [](Value v) { return cast<VectorType>(v.getType()).getDimSize(0); };
    int64_t w = width(accs.front());
    SmallVector<Value> rowSums;
    if (!llvm::isPowerOf2_64(count) || !llvm::isPowerOf2_64(w)) {
      for (int64_t i = 0; i < tm; ++i) {
        SmallVector<Value> sums;
        for (int64_t j = 0; j < tn; ++j)
          sums.push_back(vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                                     accs[i * tn + j], fast));
        auto type = VectorType::get({tn}, b.getF32Type());
        rowSums.push_back(vector::FromElementsOp::create(b, loc, type, sums));
      }
      return rowSums;
    }
    // A vector whose lanes are segments of equal width, segment g holding
    // partial sums of accs[sources[g]].
    struct Part {
      Value v;
      SmallVector<int64_t> sources;
    };
    SmallVector<Part> parts;
    for (int64_t i = 0; i < count; ++i)
      parts.push_back({accs[i], {i}});
    while (parts.size() > 1 && int64_t(parts.front().sources.size()) < w) {
      SmallVector<Part> next;
      for (size_t p = 0; p < parts.size(); p += 2) {
        const Part &x = parts[p], &y = parts[p + 1];
        int64_t segs = x.sources.size(), s = w / segs;
        SmallVector<int64_t> lo, hi;
        Part folded;
        for (int64_t g = 0; g < segs; ++g) {
          for (int64_t from : {int64_t(0), w})
            for (int64_t t = 0; t < s / 2; ++t) {
              lo.push_back(from + g * s + t);
              hi.push_back(from + g * s + s / 2 + t);
            }
          folded.sources.append({x.sources[g], y.sources[g]});
        }
        folded.v = arith::AddFOp::create(b, loc, vector::ShuffleOp::create(b, loc, x.v, y.v, lo),
                                         vector::ShuffleOp::create(b, loc, x.v, y.v, hi), fast);
        next.push_back(std::move(folded));
      }
      parts = std::move(next);
    }
    while (parts.size() == 1 && int64_t(parts.front().sources.size()) < width(parts.front().v)) {
      Part &x = parts.front();
      int64_t segs = x.sources.size(), s = width(x.v) / segs;
      SmallVector<int64_t> lo, hi;
      for (int64_t g = 0; g < segs; ++g)
        for (int64_t t = 0; t < s / 2; ++t) {
          lo.push_back(g * s + t);
          hi.push_back(g * s + s / 2 + t);
        }
      x.v = arith::AddFOp::create(b, loc, vector::ShuffleOp::create(b, loc, x.v, x.v, lo),
                                  vector::ShuffleOp::create(b, loc, x.v, x.v, hi), fast);
    }
    // Every part now holds one sum per lane: gather each row's.
    SmallVector<std::pair<int64_t, int64_t>> where(count);
    for (auto [p, part] : llvm::enumerate(parts))
      for (auto [lane, source] : llvm::enumerate(part.sources))
        where[source] = {p, lane};
    for (int64_t i = 0; i < tm; ++i) {
      SmallVector<int64_t> used;
      for (int64_t j = 0; j < tn; ++j)
        if (!llvm::is_contained(used, where[i * tn + j].first))
          used.push_back(where[i * tn + j].first);
      if (used.size() <= 2) {
        Value x = parts[used.front()].v, y = used.size() == 2 ? parts[used.back()].v : x;
        SmallVector<int64_t> mask;
        for (int64_t j = 0; j < tn; ++j) {
          auto [p, lane] = where[i * tn + j];
          mask.push_back(p == used.front() ? lane : width(x) + lane);
        }
        bool identity = width(x) == tn && llvm::equal(mask, llvm::seq<int64_t>(0, tn));
        rowSums.push_back(identity ? x : vector::ShuffleOp::create(b, loc, x, y, mask).getResult());
        continue;
      }
      SmallVector<Value> sums;
      for (int64_t j = 0; j < tn; ++j) {
        auto [p, lane] = where[i * tn + j];
        sums.push_back(vector::ExtractOp::create(b, loc, parts[p].v, lane));
      }
      rowSums.push_back(
          vector::FromElementsOp::create(b, loc, VectorType::get({tn}, b.getF32Type()), sums));
    }
    return rowSums;
  }

  /// C[r[i], n0 .. n0 + tn) += rowSums[i] (+ extra[i * tn + j], scalars,
  /// where given): one vector per row where C's rows are contiguous.
  void addRowSums(Value c, ArrayRef<Value> r, Value n0, ArrayRef<Value> rowSums,
                  ArrayRef<Value> extra = {}) {
    for (auto [i, row] : llvm::enumerate(r)) {
      Value sums = rowSums[i];
      auto type = cast<VectorType>(sums.getType());
      int64_t tn = type.getDimSize(0);
      if (!extra.empty())
        sums = arith::AddFOp::create(
            b, loc, sums,
            vector::FromElementsOp::create(b, loc, type, extra.slice(i * tn, tn)));
      if (unitInnerStride(c.getType())) {
        Value old = vector::LoadOp::create(b, loc, type, c, ValueRange{row, n0});
        vector::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sums), c,
                                ValueRange{row, n0});
        continue;
      }
      for (int64_t j = 0; j < tn; ++j) {
        Value col = j ? arith::AddIOp::create(b, loc, n0, cst(j)).getResult() : n0;
        Value old = memref::LoadOp::create(b, loc, c, ValueRange{row, col});
        Value sum = vector::ExtractOp::create(b, loc, sums, j);
        memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, sum), c,
                                ValueRange{row, col});
      }
    }
  }

  /// `columns`: tn vectors of vw lanes, lane l of vector j holding the
  /// output of row l and column j (tn <= vw, both powers of two). Returns
  /// the vw rows as vectors of tn lanes. Each chunk of tn lanes of the tn
  /// vectors is a square transposed in place by swapping its off-diagonal
  /// blocks, halving them each time (tn * log2(tn) two-source shuffles);
  /// row r is then lanes [r / tn * tn, + tn) of vector r % tn.
  SmallVector<Value> columnsToRows(ArrayRef<Value> columns) {
    int64_t tn = columns.size();
    int64_t vw = cast<VectorType>(columns.front().getType()).getDimSize(0);
    SmallVector<Value> v(columns.begin(), columns.end());
    for (int64_t h = tn / 2; h >= 1; h /= 2)
      for (int64_t i = 0; i < tn; ++i) {
        if (i & h)
          continue;
        SmallVector<int64_t> first, second;
        for (int64_t l = 0; l < vw; ++l) {
          first.push_back(l & h ? vw + l - h : l);
          second.push_back(l & h ? vw + l : l + h);
        }
        Value x = v[i], y = v[i + h];
        v[i] = vector::ShuffleOp::create(b, loc, x, y, first);
        v[i + h] = vector::ShuffleOp::create(b, loc, x, y, second);
      }
    SmallVector<Value> result;
    for (int64_t r = 0; r < vw; ++r) {
      Value x = v[r % tn];
      if (tn == vw) {
        result.push_back(x);
        continue;
      }
      SmallVector<int64_t> lanes;
      for (int64_t t = 0; t < tn; ++t)
        lanes.push_back(r / tn * tn + t);
      result.push_back(vector::ShuffleOp::create(b, loc, x, x, lanes));
    }
    return result;
  }

  /// A group's sums as `columns` (column j: lane l holds the output of the
  /// group's row l and column n0 + j, rows in groups of vw interleaved one
  /// per lane): transposed to rows, each added to C where it is one of the
  /// product's `rows` rows (lane l of group G is row G * vw + l - first).
  void addGroupColumns(Value c, Value rows, Value first, Value group, ArrayRef<Value> columns,
                       Value n0) {
    int64_t vw = cast<VectorType>(columns.front().getType()).getDimSize(0), tn = columns.size();
    SmallVector<Value> rowVecs = tn == 1 ? SmallVector<Value>() : columnsToRows(columns);
    Value start = arith::SubIOp::create(b, loc, arith::MulIOp::create(b, loc, group, cst(vw)),
                                        first);
    auto rowOf = [&](int64_t l) {
      return arith::AddIOp::create(b, loc, start, cst(l)).getResult();
    };
    auto addRow = [&](int64_t l) {
      Value sums = tn == 1 ? vector::ShuffleOp::create(b, loc, columns[0], columns[0],
                                                        ArrayRef<int64_t>{l})
                                 .getResult()
                           : rowVecs[l];
      addRowSums(c, {rowOf(l)}, n0, {sums});
    };
    // The whole group is this product's: no checks.
    Value whole = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, start, cst(0)),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                              arith::AddIOp::create(b, loc, start, cst(vw)), rows));
    auto branch = scf::IfOp::create(b, loc, whole, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(branch.thenBlock());
    for (int64_t l = 0; l < vw; ++l)
      addRow(l);
    b.setInsertionPointToStart(branch.elseBlock());
    for (int64_t l = 0; l < vw; ++l) {
      Value row = rowOf(l);
      Value mine = arith::AndIOp::create(
          b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, row, cst(0)),
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, row, rows));
      auto one = scf::IfOp::create(b, loc, mine, /*withElseRegion=*/false);
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(one.thenBlock());
      addRow(l);
    }
  }

  /// acc + x * y (contractable to one FMA).
  Value scalarFMA(Value x, Value y, Value acc) {
    auto fast = arith::FastMathFlags::contract;
    Value p = arith::MulFOp::create(b, loc, x, y, fast);
    return arith::AddFOp::create(b, loc, p, acc, fast);
  }

  OpBuilder &b;
  Location loc;
};

/// Activations rounded to bf16 for the broadcast bf16 kernel, rows
/// interleaved in groups of vw (one row per lane) and paired along k, as
/// vdpbf16ps wants them: memref<?xi32> whose element (g * pairs + p) * vw + l
/// holds row g * vw + l's elements 2p and 2p + 1 (pairs = depth / 2; the
/// depth is even). Rows past the last in the last group are zeros.
class PairedRows : public LoopBuilder {
public:
  PairedRows(OpBuilder &b, Location loc, int64_t vw) : LoopBuilder(b, loc), vw(vw) {}

  /// x: [rows, depth] f32, unit stride, depth static and even; rows in
  /// parallel by groups when `parallel`.
  Value build(Value x, bool parallel) {
    int64_t depth = cast<MemRefType>(x.getType()).getDimSize(1), pairs = depth / 2;
    Value rows = memref::DimOp::create(b, loc, x, 0);
    Value groups = arith::CeilDivUIOp::create(b, loc, rows, cst(vw));
    Type i32 = b.getI32Type();
    Value buffer = memref::AllocOp::create(
        b, loc, MemRefType::get({ShapedType::kDynamic}, i32),
        ValueRange{arith::MulIOp::create(b, loc, groups, cst(pairs * vw))},
        b.getI64IntegerAttr(64));
    auto f32Vec = VectorType::get({vw}, b.getF32Type());
    auto bf16Vec = VectorType::get({vw}, b.getBF16Type());
    auto wordVec = VectorType::get({vw / 2}, i32);
    int64_t whole = depth / vw * vw;
    // Fewer rows than a group never take the broadcast kernel (decode):
    // nothing to fill.
    auto many = scf::IfOp::create(
        b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, rows, cst(vw)),
        /*withElseRegion=*/false);
    OpBuilder::InsertionGuard outer(b);
    b.setInsertionPointToStart(many.thenBlock());
    forEachItem(b, loc, ValueRange{groups}, parallel, [&](ValueRange ivs) {
      Value g = ivs[0];
      Value base = arith::MulIOp::create(b, loc, g, cst(pairs * vw));
      forLoop(cst(0), cst(vw), cst(1), [&](Value l) {
        Value m = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, g, cst(vw)), l);
        // Pair p of this row's element.
        auto slot = [&](Value p) {
          return arith::AddIOp::create(
              b, loc, arith::AddIOp::create(b, loc, base, arith::MulIOp::create(b, loc, p, cst(vw))),
              l);
        };
        Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, m, rows);
        auto branch = scf::IfOp::create(b, loc, inside, /*withElseRegion=*/true);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(branch.thenBlock());
        forLoop(cst(0), cst(whole), cst(vw), [&](Value k) {
          Value v = vector::LoadOp::create(b, loc, f32Vec, x, ValueRange{m, k});
          Value words = vector::BitCastOp::create(
              b, loc, wordVec, arith::TruncFOp::create(b, loc, bf16Vec, v));
          Value p0 = arith::DivUIOp::create(b, loc, k, cst(2));
          for (int64_t t = 0; t < vw / 2; ++t)
            memref::StoreOp::create(
                b, loc, vector::ExtractOp::create(b, loc, words, t), buffer,
                ValueRange{slot(arith::AddIOp::create(b, loc, p0, cst(t)))});
        });
        // The depth past whole vectors, a pair at a time.
        for (int64_t k = whole; k < depth; k += 2) {
          SmallVector<Value> pair;
          for (int64_t e : {k, k + 1})
            pair.push_back(arith::TruncFOp::create(
                b, loc, b.getBF16Type(), memref::LoadOp::create(b, loc, x, ValueRange{m, cst(e)})));
          Value two = vector::FromElementsOp::create(
              b, loc, VectorType::get({2}, b.getBF16Type()), pair);
          Value word = vector::ExtractOp::create(
              b, loc, vector::BitCastOp::create(b, loc, VectorType::get({1}, i32), two), 0);
          memref::StoreOp::create(b, loc, word, buffer, ValueRange{slot(cst(k / 2))});
        }
        b.setInsertionPointToStart(branch.elseBlock());
        Value zero = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
        forLoop(cst(0), cst(pairs), cst(1), [&](Value p) {
          memref::StoreOp::create(b, loc, zero, buffer, ValueRange{slot(p)});
        });
      });
    });
    b.setInsertionPointAfter(many);
    return buffer;
  }

private:
  int64_t vw;
};

/// Whether `a` (the activations of a bf16-dot product) suits the broadcast
/// kernel: a static, even depth.
bool pairableDepth(Value a) {
  auto type = dyn_cast<MemRefType>(a.getType());
  return type && type.getRank() == 2 && !type.isDynamicDim(1) && type.getDimSize(1) % 2 == 0 &&
         type.getDimSize(1) > 0;
}

class KernelBuilder : public LoopBuilder {
public:
  /// C[m, n] += A[m, k] * W[n, k] on 2-D buffers (k contiguous in A and W).
  /// `precise`: keep f32 activations even with bf16-dot.
  KernelBuilder(OpBuilder &b, Location loc, Value a, Value w, Value c, const KernelShape &shape,
                bool precise)
      : LoopBuilder(b, loc), shape(shape), a(a), w(w), c(c) {
    wElem = getElementTypeOrSelf(w.getType());
    dot = shape.bf16Dot && wElem.isBF16() && !precise;
    kStep = dot ? 2 * shape.vectorWidth : shape.vectorWidth;
  }

  /// Whether products of at least a group of rows take the broadcast
  /// kernel (bf16 dot products over a static even depth).
  bool pairable() const { return dot && pairableDepth(a); }

  /// `parallel`: the blocks are the thread pool's work items; false inside
  /// an enclosing parallel loop. `paired`: with pairable(), the
  /// activations as PairedRows made before the enclosing loop (its buffer,
  /// and the first of its rows that are this product's).
  void build(bool parallel = true, std::optional<std::pair<Value, Value>> paired = std::nullopt) {
    rows = memref::DimOp::create(b, loc, a, 0);
    cols = memref::DimOp::create(b, loc, w, 0);
    depth = memref::DimOp::create(b, loc, a, 1);
    // The part of k the vector loop covers.
    kVec = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, depth, cst(kStep)),
                                 cst(kStep));
    if (!pairable())
      return buildLaneSums(parallel);
    // A group of rows or more: the broadcast kernel; fewer (decode): the
    // lane-sum kernel, which reads each weight once per row tile.
    Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, rows,
                                       cst(shape.vectorWidth));
    auto branch = scf::IfOp::create(b, loc, many, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(branch.thenBlock());
    if (paired) {
      sweepPaired(paired->first, paired->second, parallel);
    } else {
      Value buffer = PairedRows(b, loc, shape.vectorWidth).build(a, parallel);
      sweepPaired(buffer, cst(0), parallel);
      memref::DeallocOp::create(b, loc, buffer);
    }
    b.setInsertionPointToStart(branch.elseBlock());
    buildLaneSums(parallel);
  }

private:
  /// The broadcast kernel over this product's rows, which are rows
  /// [first, first + rows) of `paired` (at least a group of them). A group
  /// computes all its lanes, so where the product's first or last group
  /// holds fewer than half a group of its rows, those rows take the
  /// lane-sum kernel instead: a fused MoE op's experts' rows start anywhere
  /// in the rows they share (at 512 prompt tokens over 8 experts, 10% of
  /// the lanes the broadcast kernel computed were other experts' rows).
  void sweepPaired(Value paired, Value first, bool parallel) {
    ShortGroups s = shortGroups(first, rows, shape.vectorWidth);
    forShortGroups(s, rows, [&](Value r0, Value count) { laneSumsOn(r0, count, parallel); });
    Value allRows = rows, allC = c;
    rows = arith::SubIOp::create(b, loc, s.end, s.start);
    c = rowSlice(allC, s.start, rows);
    pairSweep(paired, arith::AddIOp::create(b, loc, first, s.start), parallel);
    rows = allRows;
    c = allC;
  }

  /// The lane-sum kernel over rows [r0, r0 + count).
  void laneSumsOn(Value r0, Value count, bool parallel) {
    KernelBuilder part(b, loc, rowSlice(a, r0, count), w, rowSlice(c, r0, count), shape,
                       /*precise=*/!dot);
    part.rows = count;
    part.cols = cols;
    part.depth = depth;
    part.kVec = kVec;
    part.buildLaneSums(parallel);
  }

  /// Rows per group are the vector width; tiles are kPairGroups groups x
  /// min(8, width) weight rows.
  static constexpr int64_t kPairGroups = 2;

  /// The broadcast kernel: C[m, n] += A[m, k] * W[n, k] with one activation
  /// row per lane. Each step of a k pair loads, per group, one vector of
  /// its rows' pairs and, per weight row, its pair broadcast to every lane
  /// (vdpbf16ps with a broadcast operand); no lane sums. Work items as the
  /// lane-sum kernel's (blocks of blockN weight rows). This product's rows
  /// are rows [first, first + rows) of `paired`, whose groups need not
  /// start at `first`: lanes of other rows are computed and not stored.
  void pairSweep(Value paired, Value first, bool parallel) {
    int64_t vw = shape.vectorWidth;
    pairs = paired;
    pairFirst = first;
    pairFirstGroup = arith::DivUIOp::create(b, loc, first, cst(vw));
    Value endGroup = arith::CeilDivUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, first, rows), cst(vw));
    Value count = arith::SubIOp::create(b, loc, endGroup, pairFirstGroup);
    if (amxDepth())
      return tileSweep(count, parallel);
    KernelShape pairShape = shape;
    pairShape.tileN = std::min<int64_t>(8, vw);
    pairShape.blockN = shape.blockN / pairShape.tileN * pairShape.tileN;
    if (pairShape.blockN == 0)
      pairShape.blockN = pairShape.tileN;
    sweepRowBlocks(count, cols, kPairGroups, pairShape, parallel,
                   [&](int64_t tg, int64_t tn, Value g0, Value n0) { pairTile(tg, tn, g0, n0); });
  }

  /// Outputs C[rows of groups g0 .. g0+tg, n0 .. n0+tn].
  void pairTile(int64_t tg, int64_t tn, Value g0, Value n0) {
    int64_t vw = shape.vectorWidth;
    int64_t pairCount = cast<MemRefType>(a.getType()).getDimSize(1) / 2;
    Type i32 = b.getI32Type();
    auto accType = VectorType::get({vw}, b.getF32Type());
    auto wordVec = VectorType::get({vw}, i32);
    auto bf16Vec = VectorType::get({2 * vw}, b.getBF16Type());
    SmallVector<Value> q = indices(n0, tn);
    SmallVector<Value> groupsOf = indices(arith::AddIOp::create(b, loc, pairFirstGroup, g0), tg);
    SmallVector<Value> bases;
    for (Value g : groupsOf)
      bases.push_back(arith::MulIOp::create(b, loc, g, cst(pairCount * vw)));
    Value zeros = arith::ConstantOp::create(b, loc, accType, b.getZeroAttr(accType));
    SmallVector<Value> inits(tg * tn, zeros);
    auto loop = scf::ForOp::create(
        b, loc, cst(0), cst(pairCount), cst(1), inits,
        [&](OpBuilder &nb, Location, Value p, ValueRange accs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          Value offset = arith::MulIOp::create(b, loc, p, cst(vw));
          SmallVector<Value> xs, ys, next;
          for (Value base : bases) {
            Value words = vector::LoadOp::create(b, loc, wordVec, pairs,
                                                 ValueRange{arith::AddIOp::create(b, loc, base, offset)});
            xs.push_back(vector::BitCastOp::create(b, loc, bf16Vec, words));
          }
          Value k = arith::MulIOp::create(b, loc, p, cst(2));
          for (Value col : q) {
            Value two = vector::LoadOp::create(b, loc, VectorType::get({2}, wElem), w,
                                               ValueRange{col, k});
            Value word = vector::ExtractOp::create(
                b, loc, vector::BitCastOp::create(b, loc, VectorType::get({1}, i32), two), 0);
            ys.push_back(vector::BitCastOp::create(
                b, loc, bf16Vec, vector::BroadcastOp::create(b, loc, wordVec, word)));
          }
          for (int64_t i = 0; i < tg; ++i)
            for (int64_t j = 0; j < tn; ++j)
              next.push_back(x86vector::DotBF16Op::create(b, loc, accType, accs[i * tn + j], xs[i],
                                                          ys[j]));
          scf::YieldOp::create(b, loc, next);
        });
    for (int64_t i = 0; i < tg; ++i)
      addGroupColumns(c, rows, pairFirst, groupsOf[i],
                      SmallVector<Value>(loop.getResults().begin() + i * tn,
                                         loop.getResults().begin() + (i + 1) * tn),
                      n0);
  }

  /// The bf16 tiles: 16 weight rows x 32 bf16 (the left operand), 16
  /// pairs x 16 activation rows (the right operand, as PairedRows lays out
  /// a group at 16 lanes), 16 x 16 f32 sums.
  static constexpr int64_t kTileDepth = 32;

  /// Whether the broadcast kernel's products go to AMX tiles: 16 lanes and
  /// a depth of whole tiles.
  bool amxDepth() const {
    return shape.amx && shape.vectorWidth == kTileRows &&
           cast<MemRefType>(a.getType()).getDimSize(1) % kTileDepth == 0;
  }

  /// The broadcast kernel's products on AMX tiles (tdpbf16ps): each tile
  /// product multiplies 16 weight rows by one group's 16 activation rows
  /// over 32 of the depth, C transposed (weight rows down, activation rows
  /// across), so both operands are read as they lie: the weights' rows as
  /// stored, a group's pairs as PairedRows made them. Work items are blocks
  /// of weight rows (blockN rounded up to 32); in each, tiles of 2 x 2
  /// accumulators (32 weight rows x 2 groups; 1 where fewer are left) stay
  /// in tile registers over the depth, are stored to a buffer and
  /// added to C transposed. Weight rows past whole tiles of 16 take the
  /// vdpbf16ps tiles.
  void tileSweep(Value groups, bool parallel) {
    int64_t pairRows = 2 * kTileRows;
    int64_t block = std::max<int64_t>(1, llvm::divideCeil(shape.blockN, pairRows)) * pairRows;
    forEachRowBlock(cols, block, pairRows, parallel, [&](Value lo, Value hi) {
      Value pairEnd = wholeSteps(lo, hi, pairRows);
      Value tileEnd = wholeSteps(pairEnd, hi, kTileRows);
      Value groupPairs = arith::MulIOp::create(
          b, loc, arith::DivUIOp::create(b, loc, groups, cst(2)), cst(2));
      // The work item's buffer for its tiles' sums (4 KB; a heap block,
      // as an alloca scope cannot hold the loops once they are branches).
      auto sumsType = MemRefType::get({4 * kTileArea}, b.getF32Type());
      Value sums = memref::AllocOp::create(b, loc, sumsType, b.getI64IntegerAttr(64));
      auto overGroups = [&](int64_t tn, Value n0, auto &&tileFn) {
        forLoop(cst(0), groupPairs, cst(2), [&](Value g0) { tileFn(2, tn, g0, n0); });
        forLoop(groupPairs, groups, cst(1), [&](Value g0) { tileFn(1, tn, g0, n0); });
      };
      auto amx = [&](int64_t tg, int64_t tn, Value g0, Value n0) { amxTile(tg, tn, g0, n0, sums); };
      auto vdp = [&](int64_t tg, int64_t tn, Value g0, Value n0) { pairTile(tg, tn, g0, n0); };
      forLoop(lo, pairEnd, cst(pairRows), [&](Value n0) { overGroups(2, n0, amx); });
      forLoop(pairEnd, tileEnd, cst(kTileRows), [&](Value n0) { overGroups(1, n0, amx); });
      forLoop(tileEnd, hi, cst(1), [&](Value n0) { overGroups(1, n0, vdp); });
      memref::DeallocOp::create(b, loc, sums);
    });
  }

  /// Outputs C[rows of groups g0 .. g0+tg, n0 .. n0 + 16 tn] on AMX tiles,
  /// through `sums` (room for tg * tn tiles of f32).
  void amxTile(int64_t tg, int64_t tn, Value g0, Value n0, Value sums) {
    int64_t vw = shape.vectorWidth;
    int64_t depthStatic = cast<MemRefType>(a.getType()).getDimSize(1);
    int64_t pairCount = depthStatic / 2;
    auto operandType = amx::TileType::get({kTileRows, kTileDepth}, b.getBF16Type());
    auto sumType = amx::TileType::get({kTileRows, kTileRows}, b.getF32Type());
    SmallVector<Value> groupsOf = indices(arith::AddIOp::create(b, loc, pairFirstGroup, g0), tg);
    SmallVector<Value> bases, weightRows = indices(n0, tn, kTileRows);
    for (Value g : groupsOf)
      bases.push_back(arith::MulIOp::create(b, loc, g, cst(pairCount * vw)));
    // One tilezero per accumulator: each its own tile register.
    SmallVector<Value> inits;
    for (int64_t t = 0; t < tg * tn; ++t)
      inits.push_back(amx::TileZeroOp::create(b, loc, sumType));
    auto loop = scf::ForOp::create(
        b, loc, cst(0), cst(depthStatic / kTileDepth), cst(1), inits,
        [&](OpBuilder &nb, Location, Value step, ValueRange accs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          Value k = arith::MulIOp::create(b, loc, step, cst(kTileDepth));
          // The step's 16 pairs of a group: 16 rows of vw words.
          Value offset = arith::MulIOp::create(b, loc, step, cst(kTileDepth / 2 * vw));
          SmallVector<Value> ws, xs, next;
          for (Value row : weightRows)
            ws.push_back(amx::TileLoadOp::create(b, loc, operandType, w, ValueRange{row, k}));
          for (Value base : bases)
            xs.push_back(amx::TileLoadOp::create(
                b, loc, operandType, pairs,
                ValueRange{arith::AddIOp::create(b, loc, base, offset)}, cst(vw)));
          for (int64_t i = 0; i < tg; ++i)
            for (int64_t j = 0; j < tn; ++j)
              next.push_back(amx::TileMulFOp::create(b, loc, sumType, ws[j], xs[i],
                                                     accs[i * tn + j]));
          scf::YieldOp::create(b, loc, next);
        });
    for (int64_t t = 0; t < tg * tn; ++t)
      amx::TileStoreOp::create(b, loc, sums, ValueRange{cst(t * kTileArea)}, loop.getResult(t),
                               cst(kTileRows));
    // Tile (i, j)'s row r is weight row n0 + 16 j + r over group i's rows.
    auto laneType = VectorType::get({kTileRows}, b.getF32Type());
    for (int64_t i = 0; i < tg; ++i)
      for (int64_t j = 0; j < tn; ++j) {
        SmallVector<Value> columns;
        for (int64_t r = 0; r < kTileRows; ++r)
          columns.push_back(vector::LoadOp::create(
              b, loc, laneType, sums, ValueRange{cst((i * tn + j) * kTileArea + r * kTileRows)}));
        addGroupColumns(c, rows, pairFirst, groupsOf[i], columns, weightRows[j]);
      }
  }

  /// The lane-sum kernel: each step loads tile-m activation rows and
  /// tile-n weight rows, k along the lanes; lanes summed once per tile.
  void buildLaneSums(bool parallel) {
    Value zero = cst(0), one = cst(1);

    // bf16 dot products need the activations in bf16: one rounded copy.
    Value scratch;
    lhs = a;
    if (dot) {
      auto type = MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, b.getBF16Type());
      scratch =
          memref::AllocOp::create(b, loc, type, ValueRange{rows, depth}, b.getI64IntegerAttr(64));
      auto f32Vec = VectorType::get({shape.vectorWidth}, b.getF32Type());
      auto bf16Vec = VectorType::get({shape.vectorWidth}, b.getBF16Type());
      forLoop(zero, rows, one, [&](Value m) {
        forLoop(zero, kVec, cst(shape.vectorWidth), [&](Value k) {
          Value v = vector::LoadOp::create(b, loc, f32Vec, a, ValueRange{m, k});
          Value t = arith::TruncFOp::create(b, loc, bf16Vec, v);
          vector::StoreOp::create(b, loc, t, scratch, ValueRange{m, k});
        });
      });
      lhs = scratch;
    }

    // Work items: blocks of blockN weight rows.
    sweepRowBlocks(rows, cols, shape, parallel,
                   [&](int64_t tm, int64_t tn, Value m0, Value n0) { tile(tm, tn, m0, n0); });
    if (scratch)
      memref::DeallocOp::create(b, loc, scratch);
  }

  /// Outputs C[m0 .. m0+tm, n0 .. n0+tn].
  void tile(int64_t tm, int64_t tn, Value m0, Value n0) {
    SmallVector<Value> r = indices(m0, tm), q = indices(n0, tn);

    auto accType = VectorType::get({shape.vectorWidth}, b.getF32Type());
    Value zeros = arith::ConstantOp::create(b, loc, accType, DenseElementsAttr::get(accType, 0.0f));
    SmallVector<Value> inits(tm * tn, zeros);
    auto lhsType = VectorType::get({kStep}, getElementTypeOrSelf(lhs.getType()));
    auto wType = VectorType::get({kStep}, wElem);
    auto vecLoop = scf::ForOp::create(
        b, loc, cst(0), kVec, cst(kStep), inits,
        [&](OpBuilder &nb, Location, Value k, ValueRange accs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          SmallVector<Value> xs, ys, next;
          if (tm == 1)
            prefetchNextTile(q.front(), tn, k);
          for (Value row : r)
            xs.push_back(vector::LoadOp::create(b, loc, lhsType, lhs, ValueRange{row, k}));
          for (Value col : q) {
            Value y = vector::LoadOp::create(b, loc, wType, w, ValueRange{col, k});
            ys.push_back(dot ? y : toF32(y));
          }
          for (int64_t i = 0; i < tm; ++i)
            for (int64_t j = 0; j < tn; ++j) {
              Value acc = accs[i * tn + j];
              next.push_back(
                  dot ? x86vector::DotBF16Op::create(b, loc, accType, acc, xs[i], ys[j]).getResult()
                      : vector::FMAOp::create(b, loc, xs[i], ys[j], acc).getResult());
            }
          scf::YieldOp::create(b, loc, next);
        });

    SmallVector<Value> rowSums =
        sumLanesByRow(SmallVector<Value>(vecLoop.getResults()), tm, tn);
    // The k remainder, one product at a time (none where the depth is a
    // known multiple of the step).
    int64_t staticDepth = cast<MemRefType>(a.getType()).getDimSize(1);
    if (!ShapedType::isDynamic(staticDepth) && staticDepth % kStep == 0) {
      addRowSums(c, r, n0, rowSums);
      return;
    }
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
    auto tail = scf::ForOp::create(
        b, loc, kVec, depth, cst(1), SmallVector<Value>(tm * tn, zero),
        [&](OpBuilder &nb, Location, Value k, ValueRange partial) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          SmallVector<Value> xs, ys, next;
          for (Value row : r)
            xs.push_back(memref::LoadOp::create(b, loc, a, ValueRange{row, k}));
          for (Value col : q)
            ys.push_back(toF32(memref::LoadOp::create(b, loc, w, ValueRange{col, k})));
          for (int64_t i = 0; i < tm; ++i)
            for (int64_t j = 0; j < tn; ++j)
              next.push_back(scalarFMA(xs[i], ys[j], partial[i * tn + j]));
          scf::YieldOp::create(b, loc, next);
        });
    addRowSums(c, r, n0, rowSums, SmallVector<Value>(tail.getResults()));
  }

  /// For a tile of one activation row (decode), where a row's bytes are
  /// static: the next tile's rows (tn of them, one contiguous span)
  /// prefetched in address order, each step its share of the span, as the
  /// packed kernel's prefetchNextTile does (clamped to the buffer's last
  /// byte). Reading a tile's rows a step at a time jumps back and forth
  /// inside its span, which the hardware prefetchers follow poorly.
  void prefetchNextTile(Value n0, int64_t tn, Value k) {
    auto wType = cast<MemRefType>(w.getType());
    int64_t rowElems = wType.getDimSize(1);
    int64_t elemBytes = std::max<int64_t>(1, wElem.getIntOrFloatBitWidth() / 8);
    if (ShapedType::isDynamic(rowElems))
      return;
    int64_t rowBytes = rowElems * elemBytes;
    Value from = arith::AddIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, arith::AddIOp::create(b, loc, n0, cst(tn)), cst(rowBytes)),
        arith::MulIOp::create(b, loc, k, cst(tn * elemBytes)));
    prefetchSpan(w, cols, rowBytes, elemBytes, from, tn * kStep * elemBytes,
                 weightPrefetchLocality(shape));
  }

  KernelShape shape;
  Value a, w, c, lhs;
  Type wElem;
  bool dot;
  int64_t kStep;
  Value rows, cols, depth, kVec;
  // The broadcast kernel's paired rows, this product's first row in them
  // and that row's group.
  Value pairs, pairFirst, pairFirstGroup;
};

/// C[m, n] += A[m, k] * W[k, n] on 2-D buffers, n contiguous in W and C:
/// tiles of tile-m rows x 4 vectors of columns whose accumulators stay in
/// registers through the k loop; each step broadcasts tile-m activations and
/// loads 4 weight vectors for 4 * tile-m FMAs. No lane sums are needed.
/// Work items: blocks of 4 * tile-m rows x 4 vectors of columns; columns
/// past the last full tile are summed one at a time.
class OuterKernelBuilder : public LoopBuilder {
public:
  OuterKernelBuilder(OpBuilder &b, Location loc, Value a, Value w, Value c,
                     const KernelShape &shape)
      : LoopBuilder(b, loc), a(a), w(w), c(c), vw(shape.vectorWidth), tileM(shape.tileM) {}

  void build(bool parallel = true) {
    Value one = cst(1);
    rows = memref::DimOp::create(b, loc, a, 0);
    depth = memref::DimOp::create(b, loc, a, 1);
    cols = memref::DimOp::create(b, loc, w, 1);
    int64_t tileCols = kVectors * vw, blockRows = 4 * tileM;
    Value mBlocks = arith::CeilDivUIOp::create(b, loc, rows, cst(blockRows));
    Value nBlocks = arith::CeilDivUIOp::create(b, loc, cols, cst(tileCols));
    forEachItem(b, loc, ValueRange{mBlocks, nBlocks}, parallel, [&](ValueRange ivs) {
      Value mLo = arith::MulIOp::create(b, loc, ivs[0], cst(blockRows));
      Value mHi =
          arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, mLo, cst(blockRows)), rows);
      Value n0 = arith::MulIOp::create(b, loc, ivs[1], cst(tileCols));
      Value nHi =
          arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, n0, cst(tileCols)), cols);
      Value fullTile = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                             arith::SubIOp::create(b, loc, nHi, n0), cst(tileCols));
      auto branch = scf::IfOp::create(b, loc, fullTile, /*withElseRegion=*/true);
      {
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(branch.thenBlock());
        Value span = arith::SubIOp::create(b, loc, mHi, mLo);
        Value mFull = arith::AddIOp::create(
            b, loc, mLo,
            arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, span, cst(tileM)),
                                  cst(tileM)));
        forLoop(mLo, mFull, cst(tileM), [&](Value m0) { tile(tileM, m0, n0); });
        forLoop(mFull, mHi, one, [&](Value m0) { tile(1, m0, n0); });
        b.setInsertionPointToStart(branch.elseBlock());
        forLoop(mLo, mHi, one,
                [&](Value m) { forLoop(n0, nHi, one, [&](Value n) { column(m, n); }); });
      }
    });
  }

private:
  static constexpr int64_t kVectors = 4, kAhead = 16;

  /// C[m0 .. m0+tm, n0 .. n0 + 4 vectors]. Each step prefetches row k's
  /// lines of the next block of columns (in the last block, the tile's own
  /// lines kAhead rows on), as the packed row combination does: absorbed
  /// MLA's bf16 k_b products (16 heads of 128 x 512) took 112 us a layer of
  /// the DeepSeek-shaped bf16 decode without (19 GB/s, against 26-28 for
  /// the other products).
  void tile(int64_t tm, Value m0, Value n0) {
    Type elem = getElementTypeOrSelf(w.getType());
    auto wType = VectorType::get({vw}, elem);
    SmallVector<Value> q = indices(n0, kVectors, vw);
    int64_t elemBytes = std::max<int64_t>(1, elem.getIntOrFloatBitWidth() / 8);
    outerProductTile(a, c, depth, indices(m0, tm), q, vw, [&](Value k) {
      auto [pRow, pCol] = nextBlockPrefetch(k, q.front(), kVectors * vw, cols, depth, kAhead);
      prefetchAlongRow(w, pRow, pCol, arith::SubIOp::create(b, loc, cols, cst(1)), kVectors * vw,
                       64 / elemBytes, weightPrefetchLocality(vw));
      SmallVector<Value> ws;
      for (Value col : q)
        ws.push_back(toF32(vector::LoadOp::create(b, loc, wType, w, ValueRange{k, col})));
      return ws;
    });
  }

  /// C[m, n], one product at a time (columns past the last full tile).
  void column(Value m, Value n) {
    Value init = memref::LoadOp::create(b, loc, c, ValueRange{m, n});
    auto loop =
        scf::ForOp::create(b, loc, cst(0), depth, cst(1), ValueRange{init},
                           [&](OpBuilder &nb, Location, Value k, ValueRange acc) {
                             OpBuilder::InsertionGuard guard(b);
                             b.setInsertionPointToStart(nb.getInsertionBlock());
                             Value x = memref::LoadOp::create(b, loc, a, ValueRange{m, k});
                             Value y = toF32(memref::LoadOp::create(b, loc, w, ValueRange{k, n}));
                             scf::YieldOp::create(b, loc, scalarFMA(x, y, acc[0]));
                           });
    memref::StoreOp::create(b, loc, loop.getResult(0), c, ValueRange{m, n});
  }

  Value a, w, c;
  int64_t vw, tileM;
  Value rows, depth, cols;
};

/// Activations quantized for the int8 dot products: each row, per block
/// of `unit` elements (32; 16 for weights in groups of 16), symmetric int8
/// codes q = round(x * 127 / max|x|). (The error of one product is at most
/// half a step, max|x| / 254, of its block: the products are as exact as
/// llama.cpp's Q8 activations.) Rows are interleaved in groups of vw (the
/// vector width), one lane per row, so the kernels load a vector holding
/// the same four codes of vw rows; the rows are padded with zeros to whole
/// groups. For row r = g * vw + l:
/// - codes: memref<?xi32>, elements [4c, 4c + 4) (four s8 codes) at
///   (g * words + c) * vw + l (words = depth / 4);
/// - stats: memref<?xf32>, block u's scale max|x| / 127 at ((g * units + u)
///   * 2) * vw + l and the sum of its quantized activations (scale * sum of
///   the codes; the weights' offsets multiply it) vw further;
/// - corrections: memref<?xi32>, -128 * block u's code sum (the correction
///   of a dot product whose weights were biased to unsigned bytes) at
///   (g * units + u) * vw + l.
struct QuantizedRows {
  Value codes, stats, corrections;
};

/// The int8 blocks of the activations (a divisor of 32 and the weights'
/// group), or 0 when the packed form has none (FP8 codes; odd groups).
int64_t int8Unit(StringRef storage, int64_t group, int64_t vectorWidth) {
  if (storage != "u4" && storage != "i8")
    return 0;
  int64_t unit = group % 32 == 0 ? 32 : group == 16 ? 16 : 0;
  return unit && unit % vectorWidth == 0 ? unit : 0;
}

/// Residual codes (16-bit activations) count 128ths of a step.
constexpr int64_t kResidualSteps = 128;

/// One block of activations quantized: its scale max|x| / 127, the i32
/// codes round(x * 127 / max|x|) of each vector of `xs`, their sum, and
/// scale * that sum (the block's quantized activations added up).
/// With residuals, each element also has a second code, the rounding
/// error in 128ths of a step: r = round(128 * (x * 127 / max|x| - code)),
/// in [-64, 64], so x = scale * (code + r / 128) to 1/256 of a step (15
/// bits against 8), and `total` is scale * (sum of codes + sum of r / 128).
struct QuantizedBlock {
  Value scale, total, codeTotal;
  SmallVector<Value> codes, residuals;
};

/// W8A8 rows (moir.row_quant): compressed-tensors' per-token int8 scale of
/// a row whose largest magnitude is `amax`: amax / 127.5, f32's epsilon for
/// a row of zeros.
Value rowQuantScaleOf(OpBuilder &b, Location loc, Value amax) {
  auto f32c = [&](float v) { return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)); };
  Value scale = arith::DivFOp::create(b, loc, amax, f32c(127.5f));
  Value isZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, scale, f32c(0.0f));
  return arith::SelectOp::create(b, loc, isZero, f32c(std::numeric_limits<float>::epsilon()),
                                 scale);
}

/// compressed-tensors' int8 codes of `x` (a vector, or a scalar) in steps of
/// `scale` (shaped like x): roundeven(clamp(x / scale, -128, 127)), as f32.
Value rowQuantCodes(OpBuilder &b, Location loc, Value x, Value scale) {
  auto bound = [&](float v) {
    auto attr = b.getF32FloatAttr(v);
    auto vec = dyn_cast<VectorType>(x.getType());
    return vec ? arith::ConstantOp::create(b, loc, vec, DenseElementsAttr::get(vec, v)).getResult()
               : arith::ConstantOp::create(b, loc, attr).getResult();
  };
  Value y = arith::DivFOp::create(b, loc, x, scale);
  y = arith::MinimumFOp::create(b, loc, arith::MaximumFOp::create(b, loc, y, bound(-128.0f)),
                                bound(127.0f));
  return math::RoundEvenOp::create(b, loc, y);
}

/// rowQuantScaleOf row m of x [rows, depth] (depth a multiple of vw).
Value rowQuantScale(OpBuilder &b, Location loc, Value x, Value m, Value depth, int64_t vw) {
  auto fVec = VectorType::get({vw}, b.getF32Type());
  Value zeros = arith::ConstantOp::create(b, loc, fVec, DenseElementsAttr::get(fVec, 0.0f));
  auto c = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); };
  auto loop = scf::ForOp::create(b, loc, c(0), depth, c(vw), ValueRange{zeros});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value v = vector::LoadOp::create(b, loc, fVec, x, ValueRange{m, loop.getInductionVar()});
    Value peak = arith::MaxNumFOp::create(b, loc, loop.getRegionIterArgs()[0],
                                          math::AbsFOp::create(b, loc, v));
    scf::YieldOp::create(b, loc, peak);
  }
  return rowQuantScaleOf(b, loc,
                         vector::ReductionOp::create(b, loc, vector::CombiningKind::MAXNUMF,
                                                     loop.getResult(0)));
}

/// Block u (elements [u * unit, u * unit + unit)) of row m of x [rows,
/// depth], read as unit / vw vectors and quantized; with `residual`, the
/// residual codes too. With `rowScale` (moir.row_quant, rowQuantScale), the
/// block's scale is the row's and its codes are compressed-tensors' own,
/// roundeven(clamp(x / scale, -128, 127)): int8 codes of a W8A8 row come
/// out as the reference's, so the products are exact.
QuantizedBlock quantizeBlock(OpBuilder &b, Location loc, Value x, Value m, Value u, int64_t unit,
                             int64_t vw, bool residual = false, Value rowScale = {}) {
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  auto fVec = VectorType::get({vw}, f32);
  auto iVec = VectorType::get({vw}, i32);
  Value base = arith::MulIOp::create(b, loc, u, arith::ConstantIndexOp::create(b, loc, unit));
  SmallVector<Value> xs;
  for (int64_t j = 0; j < unit / vw; ++j) {
    Value k = arith::AddIOp::create(b, loc, base, arith::ConstantIndexOp::create(b, loc, j * vw));
    xs.push_back(vector::LoadOp::create(b, loc, fVec, x, ValueRange{m, k}));
  }
  if (rowScale) {
    QuantizedBlock q;
    q.scale = rowScale;
    Value scales = vector::BroadcastOp::create(b, loc, fVec, rowScale);
    Value codeSum;
    for (auto [j, v] : llvm::enumerate(xs)) {
      Value codes = arith::FPToSIOp::create(b, loc, iVec, rowQuantCodes(b, loc, v, scales));
      codeSum = j ? arith::AddIOp::create(b, loc, codeSum, codes).getResult() : codes;
      q.codes.push_back(codes);
    }
    q.codeTotal = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, codeSum);
    q.total = arith::MulFOp::create(b, loc, q.scale,
                                    arith::SIToFPOp::create(b, loc, f32, q.codeTotal));
    return q;
  }
  Value peak;
  for (auto [j, v] : llvm::enumerate(xs)) {
    Value mag = math::AbsFOp::create(b, loc, v);
    peak = j ? arith::MaxNumFOp::create(b, loc, peak, mag).getResult() : mag;
  }
  Value amax = vector::ReductionOp::create(b, loc, vector::CombiningKind::MAXNUMF, peak);
  auto f32c = [&](float v) { return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)); };
  QuantizedBlock q;
  q.scale = arith::DivFOp::create(b, loc, amax, f32c(127));
  Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, amax, f32c(0));
  Value inverse = arith::SelectOp::create(
      b, loc, positive, arith::DivFOp::create(b, loc, f32c(127), amax), f32c(0));
  Value inverses = vector::BroadcastOp::create(b, loc, fVec, inverse);
  auto splat = [&](float v) {
    return arith::ConstantOp::create(b, loc, fVec, DenseElementsAttr::get(fVec, v)).getResult();
  };
  Value codeSum, residualSum;
  for (auto [j, v] : llvm::enumerate(xs)) {
    Value y = arith::MulFOp::create(b, loc, v, inverses);
    Value r = math::RoundEvenOp::create(b, loc, y);
    Value codes = arith::FPToSIOp::create(b, loc, iVec, r);
    codeSum = j ? arith::AddIOp::create(b, loc, codeSum, codes).getResult() : codes;
    q.codes.push_back(codes);
    if (!residual)
      continue;
    // |y - r| <= 1/2: 128ths of a step in [-64, 64].
    Value rest = math::RoundEvenOp::create(
        b, loc,
        arith::MulFOp::create(b, loc, arith::SubFOp::create(b, loc, y, r), splat(kResidualSteps)));
    Value restCodes = arith::FPToSIOp::create(b, loc, iVec, rest);
    residualSum = j ? arith::AddIOp::create(b, loc, residualSum, restCodes).getResult() : restCodes;
    q.residuals.push_back(restCodes);
  }
  q.codeTotal = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, codeSum);
  // The offsets multiply the sum of the quantized activations, so the
  // product is exactly that of the quantized activations with the
  // weights: with the exact sum, an offset (-8 * scale for 4-bit codes)
  // would multiply the block's rounding errors a second time.
  Value sum = arith::SIToFPOp::create(b, loc, f32, q.codeTotal);
  if (residual) {
    Value rests = arith::SIToFPOp::create(
        b, loc, f32,
        vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, residualSum));
    sum = arith::AddFOp::create(b, loc, sum,
                                arith::MulFOp::create(b, loc, rests, f32c(1.0f / kResidualSteps)));
  }
  q.total = arith::MulFOp::create(b, loc, q.scale, sum);
  return q;
}

/// acc + the lanes' 4-byte dot products of `weights` (unsigned bytes for
/// x86's vpdpbusd, signed for AArch64's sdot at 4 lanes) and s8 `acts`,
/// vw i32 lanes.
Value dotProduct(OpBuilder &b, Location loc, int64_t vw, Value acc, Value weights, Value acts) {
  auto bytes = VectorType::get({4 * vw}, b.getI8Type());
  std::string name = vw == 4 ? "llvm.aarch64.neon.sdot.v4i32.v16i8"
                             : "llvm.x86.avx512.vpdpbusd." + std::to_string(32 * vw);
  auto asBytes = [&](Value v) {
    return v.getType() == bytes ? v : vector::BitCastOp::create(b, loc, bytes, v).getResult();
  };
  return LLVM::CallIntrinsicOp::create(b, loc, acc.getType(), b.getStringAttr(name),
                                       ValueRange{acc, asBytes(weights), asBytes(acts)})
      .getResult(0);
}

class ActivationQuantizer : public LoopBuilder {
public:
  /// `rowScaled`: moir.row_quant rows (quantizeBlock's rowScale).
  ActivationQuantizer(OpBuilder &b, Location loc, int64_t vw, int64_t unit, bool rowScaled = false)
      : LoopBuilder(b, loc), vw(vw), unit(unit), rowScaled(rowScaled) {}

  /// Quantizes x [rows, depth] (depth a multiple of the unit, unit stride)
  /// into new buffers; rows in parallel when `parallel`. With `minRows`,
  /// only where x has that many rows (the buffers are made either way).
  QuantizedRows build(Value x, bool parallel, int64_t minRows = 0) {
    Value rows = memref::DimOp::create(b, loc, x, 0);
    Value depth = memref::DimOp::create(b, loc, x, 1);
    units = arith::DivUIOp::create(b, loc, depth, cst(unit));
    words = arith::DivUIOp::create(b, loc, depth, cst(4));
    Value padded = arith::MulIOp::create(b, loc, arith::CeilDivUIOp::create(b, loc, rows, cst(vw)),
                                         cst(vw));
    QuantizedRows q;
    auto alloc = [&](Type elem, Value perRow) {
      auto type = MemRefType::get({ShapedType::kDynamic}, elem);
      Value size = arith::MulIOp::create(b, loc, padded, perRow);
      return memref::AllocOp::create(b, loc, type, ValueRange{size}, b.getI64IntegerAttr(64))
          .getResult();
    };
    q.codes = alloc(b.getI32Type(), words);
    q.stats = alloc(b.getF32Type(), arith::MulIOp::create(b, loc, units, cst(2)));
    q.corrections = alloc(b.getI32Type(), units);
    OpBuilder::InsertionGuard guard(b);
    if (minRows) {
      Value enough =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, rows, cst(minRows));
      b.setInsertionPointToStart(
          scf::IfOp::create(b, loc, enough, /*withElseRegion=*/false).thenBlock());
    }
    forEachItem(b, loc, ValueRange{rows}, parallel, [&](ValueRange ivs) {
      Value m = ivs[0];
      Value scale = rowScaled ? rowQuantScale(b, loc, x, m, depth, vw) : Value();
      forLoop(cst(0), units, cst(1), [&](Value u) { block(x, q, m, u, scale); });
    });
    // The padding rows: zero codes and statistics.
    forLoop(rows, padded, cst(1), [&](Value m) {
      Value zeroI = arith::ConstantIntOp::create(b, loc, b.getI32Type(), 0);
      Value zeroF = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
      forLoop(cst(0), words, cst(1), [&](Value c) {
        memref::StoreOp::create(b, loc, zeroI, q.codes, ValueRange{at(m, words, c)});
      });
      forLoop(cst(0), units, cst(1), [&](Value u) {
        storeStats(q, m, u, zeroF, zeroF, zeroI);
      });
    });
    return q;
  }

private:
  /// Row m's item i of `count` per row in the interleaved layout.
  Value at(Value m, Value count, Value i) {
    Value group = arith::DivUIOp::create(b, loc, m, cst(vw));
    Value lane = arith::RemUIOp::create(b, loc, m, cst(vw));
    Value slot = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, group, count), i);
    return arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, slot, cst(vw)), lane);
  }

  void storeStats(const QuantizedRows &q, Value m, Value u, Value scale, Value total,
                  Value correction) {
    Value group = arith::DivUIOp::create(b, loc, m, cst(vw));
    Value lane = arith::RemUIOp::create(b, loc, m, cst(vw));
    Value gu = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, group, units), u);
    Value first = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, gu, cst(2 * vw)), lane);
    memref::StoreOp::create(b, loc, scale, q.stats, ValueRange{first});
    memref::StoreOp::create(b, loc, total, q.stats,
                            ValueRange{arith::AddIOp::create(b, loc, first, cst(vw))});
    memref::StoreOp::create(b, loc, correction, q.corrections, ValueRange{at(m, units, u)});
  }

  void block(Value x, const QuantizedRows &q, Value m, Value u, Value rowScale) {
    Type i32 = b.getI32Type();
    Value base = arith::MulIOp::create(b, loc, u, cst(unit));
    QuantizedBlock block = quantizeBlock(b, loc, x, m, u, unit, vw, false, rowScale);
    auto wordVec = VectorType::get({vw / 4}, i32);
    for (auto [j, codes] : llvm::enumerate(block.codes)) {
      Value bytes =
          arith::TruncIOp::create(b, loc, VectorType::get({vw}, b.getI8Type()), codes);
      Value packed = vector::BitCastOp::create(b, loc, wordVec, bytes);
      // Words (base + j * vw) / 4 + e, each to its lane of its group.
      Value firstWord =
          arith::DivUIOp::create(b, loc, arith::AddIOp::create(b, loc, base, cst(j * vw)), cst(4));
      for (int64_t e = 0; e < vw / 4; ++e) {
        Value word = vector::ExtractOp::create(b, loc, packed, ArrayRef<int64_t>{e});
        memref::StoreOp::create(
            b, loc, word, q.codes,
            ValueRange{at(m, words, arith::AddIOp::create(b, loc, firstWord, cst(e)))});
      }
    }
    Value correction = arith::MulIOp::create(b, loc, block.codeTotal,
                                             arith::ConstantIntOp::create(b, loc, i32, -128));
    storeStats(q, m, u, block.scale, block.total, correction);
  }

  int64_t vw, unit;
  bool rowScaled;
  Value units, words;
};

/// Activations quantized for the decode kernel (fewer rows than the
/// interleaved tiles are worth): the same symmetric int8 codes per row and
/// block of `unit`, kept one row after another, in the order the kernel's
/// dot products read the weights' codes, with each 4-code lane's block
/// statistics beside them so that a vector of lanes scales itself:
/// - codes: memref<?xi8>, row m's position p at m * depth + p;
/// - scales and sums: memref<?xf32>, lane p / 4 at m * depth / 4 + p / 4:
///   its block's scale, and its block's activation sum divided by the
///   block's unit / 4 lanes (they add up to the sum);
/// - corrections (int8 weights on x86 only): memref<?xi32>, the same lanes,
///   -128 times the lane's four codes added (vpdpbusd multiplies int8
///   weight codes biased to unsigned bytes).
/// Positions are elements, except for nibble weights that the kernel
/// loads `nibbleGroups` > 1 groups of 32 at a time: the low nibbles of
/// their 16 bytes each, then the high ones, so position h * 16G + g * 16 +
/// e holds group g's element 16h + e (a last group left over, its
/// elements in order: the kernel's tail step loads one group).
/// With residual codes (16-bit activations, QuantizedBlock), each element
/// also has its residual code at the same position of `residuals`, the
/// lane scales are the block's scale / 128 (they multiply 128 * dot(codes)
/// + dot(residuals)), and the corrections are -128 times the lane's codes
/// added minus its residual codes added: the kernel adds the codes'
/// biased dot product to them before it multiplies by 128 and adds the
/// residuals' (128 times that, plus -128 times the residuals' sum, is the
/// residuals' bias).
/// With group sums (the superblock kernels: one activation scale per
/// block of 256, which they multiply into the weights' superblock scales
/// once, not into every dot product's lanes), `groupSums` holds each
/// weight group's sum of the quantized activations instead of the lane
/// sums: memref<?xf32>, group t of row m at m * depth / group + t.
struct RowCodes {
  Value codes, scales, sums, corrections, residuals, groupSums;

  /// The buffers there are, in order.
  SmallVector<Value> values() const {
    SmallVector<Value> all;
    for (Value v : {codes, scales, sums, corrections, residuals, groupSums})
      if (v)
        all.push_back(v);
    return all;
  }
  /// The same buffers from `values` (in values()'s order).
  RowCodes with(ValueRange values) const {
    RowCodes q = *this;
    unsigned i = 0;
    for (Value *v : {&q.codes, &q.scales, &q.sums, &q.corrections, &q.residuals, &q.groupSums})
      if (*v)
        *v = values[i++];
    return q;
  }
};

/// A fused op's row-layout quantization of its activation buffer, made
/// before its loop when the buffer has few rows (decode): `quantized`
/// holds whether it was, `codes` the buffers (empty when not).
struct HoistedRowCodes {
  RowCodes codes;
  Value quantized;
};

class RowQuantizer : public LoopBuilder {
public:
  /// `rowScaled`: moir.row_quant rows (quantizeBlock's rowScale; no
  /// residual codes: the int8 codes are exact). `sumGroup` > 0: group sums
  /// of that many elements (a multiple of vw dividing the unit), no lane
  /// sums.
  RowQuantizer(OpBuilder &b, Location loc, int64_t vw, int64_t unit, int64_t nibbleGroups,
               bool sums, bool corrections, bool residual, bool rowScaled = false,
               int64_t sumGroup = 0)
      : LoopBuilder(b, loc), vw(vw), unit(unit), nibbleGroups(nibbleGroups),
        withSums(sums && !sumGroup), withCorrections(corrections),
        residual(residual && !rowScaled), rowScaled(rowScaled), sumGroup(sumGroup) {}

  /// Quantizes x [rows, depth] (depth a multiple of 32 and of the unit,
  /// unit stride) into new buffers; rows in parallel when `parallel`.
  RowCodes build(Value x, bool parallel = false) {
    Value rows = memref::DimOp::create(b, loc, x, 0);
    depth = memref::DimOp::create(b, loc, x, 1);
    lanes = arith::DivUIOp::create(b, loc, depth, cst(4));
    units = arith::DivUIOp::create(b, loc, depth, cst(unit));
    auto alloc = [&](Type elem, Value perRow) {
      auto type = MemRefType::get({ShapedType::kDynamic}, elem);
      Value size = arith::MulIOp::create(b, loc, rows, perRow);
      return memref::AllocOp::create(b, loc, type, ValueRange{size}, b.getI64IntegerAttr(64))
          .getResult();
    };
    RowCodes q;
    q.codes = alloc(b.getI8Type(), depth);
    q.scales = alloc(b.getF32Type(), lanes);
    if (withSums)
      q.sums = alloc(b.getF32Type(), lanes);
    if (withCorrections)
      q.corrections = alloc(b.getI32Type(), lanes);
    if (residual)
      q.residuals = alloc(b.getI8Type(), depth);
    if (sumGroup)
      q.groupSums = alloc(b.getF32Type(), arith::DivUIOp::create(b, loc, depth, cst(sumGroup)));
    forEachItem(b, loc, ValueRange{rows}, parallel, [&](ValueRange ivs) {
      Value m = ivs[0];
      Value scale = rowScaled ? rowQuantScale(b, loc, x, m, depth, vw) : Value();
      forLoop(cst(0), units, cst(1), [&](Value u) { block(x, q, m, u, scale); });
      if (!withCorrections)
        return;
      correct(q, m);
    });
    return q;
  }

private:
  /// Row m's corrections: -128 * each lane's code sum (the dot products
  /// of 0x80 bytes with the codes, negated), less its residual codes' sum
  /// where there are residuals, 32 codes (8 lanes: x86 only) at a time.
  void correct(const RowCodes &q, Value m) {
    auto iVec = VectorType::get({8}, b.getI32Type());
    Value zero = arith::ConstantOp::create(b, loc, iVec, b.getZeroAttr(iVec));
    auto bytes = [&](uint32_t v) {
      return arith::ConstantOp::create(b, loc, iVec,
                                       DenseElementsAttr::get(iVec, static_cast<int32_t>(v)));
    };
    Value bias = bytes(0x80808080u), ones = bytes(0x01010101u);
    auto byteVec = VectorType::get({32}, b.getI8Type());
    forLoop(cst(0), arith::DivUIOp::create(b, loc, depth, cst(32)), cst(1), [&](Value d) {
      Value pos = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, m, depth),
                                        arith::MulIOp::create(b, loc, d, cst(32)));
      Value codes = vector::LoadOp::create(b, loc, byteVec, q.codes, ValueRange{pos});
      Value biased = dotProduct(b, loc, 8, zero, bias, codes);
      if (residual)
        biased = dotProduct(b, loc, 8, biased, ones,
                            vector::LoadOp::create(b, loc, byteVec, q.residuals, ValueRange{pos}));
      Value lane = arith::DivUIOp::create(b, loc, pos, cst(4));
      vector::StoreOp::create(b, loc, arith::SubIOp::create(b, loc, zero, biased), q.corrections,
                              ValueRange{lane});
    });
  }

  /// Where vector j (elements [j * vw, j * vw + vw)) of block u goes in its
  /// row.
  Value position(Value u, int64_t j) {
    Value natural = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, u, cst(unit)),
                                          cst(j * vw));
    if (nibbleGroups <= 1)
      return natural;
    // Nibble groups are 32 elements; a unit holds unit / 32 of them.
    int64_t g = nibbleGroups, element = j * vw, h = (element % 32) / 16, e = element % 16;
    Value group = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, u, cst(unit / 32)),
                                        cst(element / 32));
    Value step = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, group, cst(g)),
                                       cst(32 * g));
    Value inStep = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, group, cst(g)),
                                         cst(16));
    Value permuted = arith::AddIOp::create(b, loc, arith::AddIOp::create(b, loc, step, inStep),
                                           cst(h * 16 * g + e));
    // Groups past the last whole step keep their order.
    Value groups = arith::DivUIOp::create(b, loc, depth, cst(32));
    Value whole = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, groups, cst(g)),
                                        cst(g));
    Value inWhole = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, group, whole);
    return arith::SelectOp::create(b, loc, inWhole, permuted, natural);
  }

  void block(Value x, const RowCodes &q, Value m, Value u, Value rowScale) {
    auto laneVec = VectorType::get({vw / 4}, b.getF32Type());
    QuantizedBlock block = quantizeBlock(b, loc, x, m, u, unit, vw, residual, rowScale);
    Value scale =
        residual ? arith::MulFOp::create(
                       b, loc, block.scale,
                       arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1.0f / kResidualSteps)))
                       .getResult()
                 : block.scale;
    Value scales = vector::BroadcastOp::create(b, loc, laneVec, scale);
    Value share = arith::DivFOp::create(
        b, loc, block.total,
        arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(unit / 4))));
    Value shares = vector::BroadcastOp::create(b, loc, laneVec, share);
    Value rowStart = arith::MulIOp::create(b, loc, m, depth);
    Value laneStart = arith::MulIOp::create(b, loc, m, lanes);
    for (auto [j, codes] : llvm::enumerate(block.codes)) {
      Value pos = position(u, j);
      auto byteVec = VectorType::get({vw}, b.getI8Type());
      Value at = arith::AddIOp::create(b, loc, rowStart, pos);
      vector::StoreOp::create(b, loc, arith::TruncIOp::create(b, loc, byteVec, codes), q.codes,
                              ValueRange{at});
      if (residual)
        vector::StoreOp::create(b, loc,
                                arith::TruncIOp::create(b, loc, byteVec, block.residuals[j]),
                                q.residuals, ValueRange{at});
      Value lane = arith::AddIOp::create(b, loc, laneStart,
                                         arith::DivUIOp::create(b, loc, pos, cst(4)));
      vector::StoreOp::create(b, loc, scales, q.scales, ValueRange{lane});
      if (withSums)
        vector::StoreOp::create(b, loc, shares, q.sums, ValueRange{lane});
    }
    if (sumGroup)
      storeGroupSums(q, block, m, u, scale);
  }

  /// Row m's sums of block u's quantized activations per group of
  /// sumGroup: scale * (the codes' sum + the residuals' / 128), as the lane
  /// sums are (quantizeBlock's `total`). `scale` is the lane scale (the
  /// block's, / 128 with residuals).
  void storeGroupSums(const RowCodes &q, const QuantizedBlock &block, Value m, Value u,
                      Value scale) {
    Type f32 = b.getF32Type();
    int64_t perGroup = sumGroup / vw;
    Value first = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, m, arith::DivUIOp::create(b, loc, depth, cst(sumGroup))),
        arith::MulIOp::create(b, loc, u, cst(unit / sumGroup)));
    auto iVec = VectorType::get({vw}, b.getI32Type());
    Value shift = arith::ConstantOp::create(
        b, loc, iVec, DenseElementsAttr::get(iVec, int32_t(llvm::Log2_64(kResidualSteps))));
    for (int64_t t = 0; t < unit / sumGroup; ++t) {
      // In units of the lane scale: the codes count 128 each with residuals.
      Value total;
      for (int64_t j = t * perGroup; j < (t + 1) * perGroup; ++j) {
        Value v = block.codes[j];
        if (residual)
          v = arith::AddIOp::create(b, loc, arith::ShLIOp::create(b, loc, v, shift),
                                    block.residuals[j]);
        total = total ? arith::AddIOp::create(b, loc, total, v).getResult() : v;
      }
      Value sum = arith::SIToFPOp::create(
          b, loc, f32, vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, total));
      memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, scale, sum), q.groupSums,
                              ValueRange{arith::AddIOp::create(b, loc, first, cst(t))});
    }
  }

public:
  /// What tells this layout from another one of the same rows.
  int64_t layoutKey() const {
    return (((((unit * 16 + nibbleGroups) * 2 + withSums) * 2 + withCorrections) * 2 + residual) *
                 2 +
             rowScaled) *
               512 +
           sumGroup;
  }

  /// Empty buffers of this layout (the branch that quantizes nothing).
  RowCodes empty() {
    auto alloc = [&](Type elem) {
      return memref::AllocOp::create(b, loc, MemRefType::get({ShapedType::kDynamic}, elem),
                                     ValueRange{cst(0)}, b.getI64IntegerAttr(64))
          .getResult();
    };
    RowCodes q;
    q.codes = alloc(b.getI8Type());
    q.scales = alloc(b.getF32Type());
    if (withSums)
      q.sums = alloc(b.getF32Type());
    if (withCorrections)
      q.corrections = alloc(b.getI32Type());
    if (residual)
      q.residuals = alloc(b.getI8Type());
    if (sumGroup)
      q.groupSums = alloc(b.getF32Type());
    return q;
  }

private:
  int64_t vw, unit, nibbleGroups;
  bool withSums, withCorrections, residual, rowScaled;
  int64_t sumGroup;
  Value depth, lanes, units;
};

/// C[m, n] += A[m, k] * W[n, k] with W packed (include/moir/Frontend/
/// Quantization.h): the codes are decoded in registers (nibbles masked and
/// shifted, int8 sign-extended, FP8 widened) and multiplied into per-group
/// accumulators; at the end of each group, sum += scale * products + offset
/// * (the activations' sum over the group), so the scales cost two FMAs per
/// group and output, not one per element. Blocked and tiled as the float
/// kernel is; each group prefetches the next tile's codes and scales.
/// (Without, the hardware prefetchers follow 8 short streams per tile and
/// Mixtral-shaped Q8_0 decodes at 89 tok/s; with, 140.)
class PackedKernelBuilder : public LoopBuilder {
public:
  PackedKernelBuilder(OpBuilder &b, Location loc, linalg::GenericOp op, const KernelShape &shape)
      : LoopBuilder(b, loc), shape(shape), a(op.getDpsInputs()[0]), data(op.getDpsInputs()[1]),
        scales(op.getDpsInputs()[2]), c(op.getDpsInits()[0]) {
    PackedForm form = packedForm(op);
    group = form.group;
    superblocks = form.superblocks;
    nibbles = form.storage == "u4";
    offsets = op.getNumDpsInputs() - 2 == (superblocks ? 6 : 2);
    dotLanes = shape.vectorWidth;
    rowScaled = op->hasAttr(moir::attrs::rowQuantName());
  }

  /// `unit` > 0: from kInt8MinRows rows on, the int8 dot products over
  /// activations quantized in blocks of `unit`: those of `hoisted` (the
  /// caller's, with this kernel's first row in them) or, without, quantized
  /// here; fewer rows with `decode`, the row kernel (rowSweep) where the
  /// depth is a multiple of depthUnit(), else the f32 kernel.
  void build(bool parallel, int64_t unit = 0,
             std::optional<std::pair<QuantizedRows, Value>> hoisted = std::nullopt,
             bool decode = false) {
    rows = memref::DimOp::create(b, loc, a, 0);
    cols = memref::DimOp::create(b, loc, data, 0);
    depth = memref::DimOp::create(b, loc, a, 1);
    groups = arith::DivUIOp::create(b, loc, depth, cst(group));
    auto floatSweep = [&] {
      // moir.row_quant rows the int8 paths do not take: their quantized
      // values (x / scale rounded, times the scale) in f32.
      Value raw = a;
      if (rowScaled)
        a = quantizedRowValues(raw, parallel);
      sweepRowBlocks(rows, cols, shape, parallel,
                     [&](int64_t tm, int64_t tn, Value m0, Value n0) { tile(tm, tn, m0, n0); });
      if (rowScaled) {
        memref::DeallocOp::create(b, loc, a);
        a = raw;
      }
    };
    if (!unit)
      return floatSweep();
    this->unit = unit;
    Value enough =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, rows, cst(kInt8MinRows));
    auto branch = scf::IfOp::create(b, loc, enough, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(branch.thenBlock());
    QuantizedRows q;
    Value first = cst(0);
    if (hoisted) {
      q = hoisted->first;
      first = hoisted->second;
    } else {
      q = ActivationQuantizer(b, loc, shape.vectorWidth, unit, rowScaled).build(a, parallel);
    }
    int8Sweep(q, first, parallel);
    if (!hoisted)
      for (Value v : {q.codes, q.stats, q.corrections})
        memref::DeallocOp::create(b, loc, v);
    b.setInsertionPointToStart(branch.elseBlock());
    if (!decode || !rowKernelFits())
      return floatSweep();
    Value whole = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq,
        arith::RemUIOp::create(b, loc, depth, cst(depthUnit())), cst(0));
    auto fits = scf::IfOp::create(b, loc, whole, /*withElseRegion=*/true);
    b.setInsertionPointToStart(fits.thenBlock());
    rowSweep(parallel);
    b.setInsertionPointToStart(fits.elseBlock());
    floatSweep();
  }

  /// The row combination (combinesRows): C[m, n] += sum_k A[m, k] * W[k,
  /// n], W's row k packed along n. Tiles of tile-m rows x up to 4 vectors
  /// of columns keep their accumulators in registers through the k loop;
  /// each step dequantizes weight row k's vectors in registers (scale *
  /// code + offset: a vector lies in one group, as the group is a multiple
  /// of the width) and broadcasts the tile's activations. Work items:
  /// blocks of 4 vectors of columns (the caller's item when not parallel).
  void buildOuter(bool parallel) {
    int64_t vw = shape.vectorWidth, tileCols = kOuterVectors * vw;
    rows = memref::DimOp::create(b, loc, a, 0);
    depth = memref::DimOp::create(b, loc, a, 1);
    cols = memref::DimOp::create(b, loc, c, 1);
    Value one = cst(1);
    Value nBlocks = arith::CeilDivUIOp::create(b, loc, cols, cst(tileCols));
    forEachItem(b, loc, ValueRange{nBlocks}, parallel, [&](ValueRange ivs) {
      Value n0 = arith::MulIOp::create(b, loc, ivs[0], cst(tileCols));
      Value nHi =
          arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, n0, cst(tileCols)), cols);
      Value mFull = wholeSteps(cst(0), rows, shape.tileM);
      Value fullTile = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                             arith::SubIOp::create(b, loc, nHi, n0), cst(tileCols));
      auto branch = scf::IfOp::create(b, loc, fullTile, /*withElseRegion=*/true);
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(branch.thenBlock());
      forLoop(cst(0), mFull, cst(shape.tileM),
              [&](Value m0) { outerTile(shape.tileM, kOuterVectors, m0, n0); });
      forLoop(mFull, rows, one, [&](Value m0) { outerTile(1, kOuterVectors, m0, n0); });
      // Columns are whole groups, so whole vectors: the last block's one
      // at a time.
      b.setInsertionPointToStart(branch.elseBlock());
      forLoop(n0, nHi, cst(vw), [&](Value n) {
        forLoop(cst(0), mFull, cst(shape.tileM),
                [&](Value m0) { outerTile(shape.tileM, 1, m0, n); });
        forLoop(mFull, rows, one, [&](Value m0) { outerTile(1, 1, m0, n); });
      });
    });
  }

  /// Fewer rows than this (decode) take the row kernel or the exact
  /// weight-only kernel: a 16-lane tile of rows would be mostly padding.
  static constexpr int64_t kInt8MinRows = 8;

private:
  static constexpr int64_t kOuterVectors = 4, kOuterAhead = 16;

  /// C[m0 .. m0+tm, n0 .. n0 + nv vectors] of the row combination.
  void outerTile(int64_t tm, int64_t nv, Value m0, Value n0) {
    int64_t vw = shape.vectorWidth;
    auto vecType = VectorType::get({vw}, b.getF32Type());
    SmallVector<Value> q = indices(n0, nv, vw), g;
    for (Value col : q)
      g.push_back(arith::DivUIOp::create(b, loc, col, cst(group)));
    // One activation row and no offsets: each group's scale multiplies the
    // row's broadcast activation (one product per group of the step) rather
    // than each weight vector (one per vector): 2 products a step instead
    // of 4 for Q8_0 at 16 lanes; the absorbed k_b products above, 97 -> 94
    // us a layer.
    bool foldScales = tm == 1 && !offsets;
    auto factorsAt = [&](Value k) {
      SmallVector<Value> factors;
      for (int64_t j = 0; j < nv; ++j)
        factors.push_back(broadcastParam(k, g[j], 0, vecType));
      return factors;
    };
    outerProductTile(a, c, depth, indices(m0, tm), q, vw, [&](Value k) {
      // Prefetched each step: the next block of columns' line of row k (a
      // whole pass over the rows ahead), or in the last block, the tile's
      // own line kOuterAhead rows on (clamped to the last row). Each step
      // reads a new row, rows apart by the whole row's bytes, which the
      // hardware prefetchers did not follow (the row combination's code
      // loads took 9.6% of a DeepSeek-shaped Q8_0 decode, in 12% for the
      // kernel); 16 rows on was less time than a miss takes: the next
      // block's lines took the absorbed k_b products (16 heads of 128 x
      // 512 Q8_0) from 97 to 68 us a layer there (MOIR_PROFILE_REGIONS).
      auto [pRow, pCol] = nextBlockPrefetch(k, q.front(), nv * vw, cols, depth, kOuterAhead);
      Value firstByte =
          nibbles ? arith::DivUIOp::create(b, loc, pCol, cst(2)).getResult() : pCol;
      int64_t tileBytes = nv * vw / (nibbles ? 2 : 1);
      Value lastByte = arith::SubIOp::create(
          b, loc, nibbles ? arith::DivUIOp::create(b, loc, cols, cst(2)).getResult() : cols,
          cst(1));
      prefetchAlongRow(data, pRow, firstByte, lastByte, tileBytes, 64,
                       weightPrefetchLocality(shape));
      memref::PrefetchOp::create(b, loc, scales,
                                 ValueRange{pRow, arith::DivUIOp::create(b, loc, pCol, cst(group)),
                                            cst(0)},
                                 /*isWrite=*/false,
                                 /*localityHint=*/weightPrefetchLocality(shape),
                                 /*isDataCache=*/true);
      SmallVector<Value> ws;
      for (auto [j, col] : llvm::enumerate(q)) {
        Value w = weights(k, col);
        if (foldScales) {
          ws.push_back(w);
          continue;
        }
        Value scale = broadcastParam(k, g[j], 0, vecType);
        ws.push_back(offsets ? vector::FMAOp::create(b, loc, scale, w,
                                                     broadcastParam(k, g[j], 1, vecType))
                                   .getResult()
                             : arith::MulFOp::create(b, loc, scale, w).getResult());
      }
      return ws;
    }, foldScales ? llvm::function_ref<SmallVector<Value>(Value)>(factorsAt) : nullptr);
  }

  /// The decode kernel's geometry. A dot product covers 4 * vw codes
  /// (vw i32 lanes); a step, the codes of one load per weight row: 4 * vw
  /// int8 codes, or for nibbles `nibbleGroups()` groups of 32 (16 bytes
  /// each: 2 groups at 16 lanes, whose low and high nibbles make one dot;
  /// 1 at 8 lanes, one dot; 1 at 4 lanes, two dots).
  /// (dotLanes: the vector width, or 8 for the tail step of a depth of odd
  /// 32s at 16 lanes.)
  int64_t dotCodes() const { return 4 * dotLanes; }
  /// Nibble groups of 32 one step loads: one dot's codes (64 at 16 lanes
  /// from 32 bytes, low nibbles then high), and at 16 lanes over
  /// superblocks (depths of whole 256s, no tail step) 4: one 64-byte load
  /// whose low and high nibbles are two dots whose lanes lie in the same
  /// groups, so they share their lane scales.
  int64_t nibbleGroups() const {
    if (!nibbles)
      return 0;
    if (superblocks && dotLanes == 16)
      return 4;
    return std::max<int64_t>(1, dotCodes() / 32);
  }
  int64_t rowStepElems() const { return nibbles ? 32 * nibbleGroups() : dotCodes(); }
  int64_t dotsPerStep() const { return rowStepElems() / dotCodes(); }
  /// The weight groups one step touches.
  int64_t groupsPerStep() const {
    return nibbles ? nibbleGroups() : std::max<int64_t>(1, dotCodes() / group);
  }
  /// Whether a dot product's lanes each lie in one group of the weights
  /// and a step in whole groups (or one group). (Nibble weights always
  /// do: their groups are 32, isPackedContraction takes no other.)
  bool rowKernelFits() const {
    auto fits = [&](int64_t codes) { return group % codes == 0 || codes % group == 0; };
    return nibbles || (fits(dotCodes()) && (!tailLanes() || fits(4 * tailLanes())));
  }
  /// The lanes of a tail step (a depth of whole 32s but not 64s at 16
  /// lanes: one step of 32 codes at 8 lanes, vpdpbusd on 256 bits), or 0.
  int64_t tailLanes() const { return shape.vectorWidth == 16 && !superblocks ? 8 : 0; }
  /// The depths the row kernel takes are multiples of this.
  int64_t depthUnit() const { return tailLanes() ? 4 * tailLanes() : rowStepElems(); }
  /// The group (among the step's) of lane l of the step's dot d.
  int64_t groupOfLane(int64_t d, int64_t l) const {
    int64_t p = d * dotCodes() + 4 * l;
    return nibbles ? (p % (16 * nibbleGroups())) / 16 : p / group;
  }
  /// The group (among a superblock's) of lane l of dot d of the
  /// superblock's step s. A step of int8 codes may be shorter than a group
  /// (16 codes at 4 lanes against Q5_K's 32): then several steps share it.
  int64_t superblockGroupOfLane(int64_t s, int64_t d, int64_t l) const {
    if (nibbles)
      return s * groupsPerStep() + groupOfLane(d, l);
    return (s * rowStepElems() + d * dotCodes() + 4 * l) / group;
  }

  /// Activation rows per decode tile: each row keeps its codes, lane
  /// scales and sums of a step live beside the tile's accumulators.
  static constexpr int64_t kRowTileM = 2;

  /// Decode over int8 activations: the activation rows quantized
  /// (RowQuantizer: by the fused op before its loop where it did, else
  /// here, once per call, which for a work item is once per block of
  /// weight rows), then the float kernel's blocks and tm x tn tiles of
  /// rowTile (tm up to kRowTileM).
  void rowSweep(bool parallel) {
    RowQuantizer quantizer = rowQuantizer();
    if (!hoistedRows) {
      RowCodes q = quantizer.build(a);
      rowCodes = q;
      rowBase = cst(0);
      sweepRowBlocks(rows, cols, kRowTileM, shape, parallel,
                     [&](int64_t tm, int64_t tn, Value m0, Value n0) { rowTile(tm, tn, m0, n0); });
      for (Value v : q.values())
        memref::DeallocOp::create(b, loc, v);
      return;
    }
    // The fused op's quantization where it made one (this kernel's rows
    // from hoistedFirst on), else this kernel's own.
    const HoistedRowCodes &h = *hoistedRows;
    SmallVector<Value> hoistedValues = h.codes.values();
    SmallVector<Type> types;
    for (Value v : hoistedValues)
      types.push_back(v.getType());
    auto pick = scf::IfOp::create(b, loc, types, h.quantized, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(pick.thenBlock());
      scf::YieldOp::create(b, loc, hoistedValues);
      b.setInsertionPointToStart(pick.elseBlock());
      scf::YieldOp::create(b, loc, quantizer.build(a).values());
    }
    rowCodes = h.codes.with(pick.getResults());
    rowBase = arith::SelectOp::create(b, loc, h.quantized, hoistedFirst, cst(0));
    sweepRowBlocks(rows, cols, kRowTileM, shape, parallel,
                   [&](int64_t tm, int64_t tn, Value m0, Value n0) { rowTile(tm, tn, m0, n0); });
    Value own = arith::XOrIOp::create(
        b, loc, h.quantized, arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1));
    auto free = scf::IfOp::create(b, loc, own, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(free.thenBlock());
    for (Value v : pick.getResults())
      memref::DeallocOp::create(b, loc, v);
  }

public:
  /// With int8 activations in blocks of `unit`: the row layout the decode
  /// kernel would read, or none where it does not apply.
  std::optional<RowQuantizer> decodeQuantizer(int64_t unit) {
    this->unit = unit;
    if (!rowKernelFits())
      return std::nullopt;
    return rowQuantizer();
  }

  /// The depths the decode kernel takes are multiples of this.
  int64_t rowDepthUnit() const { return depthUnit(); }

  /// The row layout the decode kernel reads its activations in: with
  /// superblockScaled(), one scale per 256 elements and group sums.
  RowQuantizer rowQuantizer() {
    bool whole = superblockScaled();
    return RowQuantizer(b, loc, shape.vectorWidth, whole ? 256 : unit,
                        nibbles ? nibbleGroups() : 0, offsets,
                        /*corrections=*/!nibbles && !sdot(), shape.residualDecode, rowScaled,
                        whole && offsets ? group : 0);
  }

  /// Whether the decode kernel's activations take one scale per superblock
  /// (256 elements, llama.cpp's Q8_K block), so that each superblock's
  /// weight scales are multiplied by it once and the offsets are applied
  /// once per superblock from the group sums: per dot product, one
  /// multiply and (Q4_K, Q5_K) a shuffle and an FMA fewer. The weights'
  /// scale and offset vector (superblockParams) is then whole vectors.
  bool superblockScaled() const {
    int64_t vw = shape.vectorWidth, parts = offsets ? 2 : 1;
    return superblocks && !rowScaled && (parts * 256 / group) % vw == 0 &&
           (!offsets || group % vw == 0);
  }

  /// A fused op's row quantization for the decode kernel, and this
  /// kernel's first row in it.
  void useHoistedRows(const HoistedRowCodes &h, Value first) {
    hoistedRows = h;
    hoistedFirst = first;
  }

private:

  /// Weight row n's codes of the step at element k0 as the step's dot
  /// operands: int8 codes as they are (XOR 0x80, unsigned, for vpdpbusd);
  /// nibbles masked and shifted, the low ones of the step's bytes then the
  /// high ones.
  SmallVector<Value> weightDots(Value n, Value k0) {
    Type i8 = b.getI8Type();
    auto splat = [&](VectorType type, int64_t v) {
      return arith::ConstantOp::create(b, loc, type, DenseElementsAttr::get(type, b.getIntegerAttr(i8, v)))
          .getResult();
    };
    SmallVector<Value> dots;
    if (!nibbles) {
      auto type = VectorType::get({dotCodes()}, i8);
      Value codes = vector::LoadOp::create(b, loc, type, data, ValueRange{n, k0});
      dots.push_back(sdot() ? codes : arith::XOrIOp::create(b, loc, codes, splat(type, -128)).getResult());
      return dots;
    }
    int64_t bytes = 16 * nibbleGroups();
    auto type = VectorType::get({bytes}, i8);
    Value raw = vector::LoadOp::create(b, loc, type, data,
                                       ValueRange{n, arith::DivUIOp::create(b, loc, k0, cst(2))});
    Value low = arith::AndIOp::create(b, loc, raw, splat(type, 15));
    Value high = arith::ShRUIOp::create(b, loc, raw, splat(type, 4));
    if (dotsPerStep() == 2)
      return {low, high};
    SmallVector<int64_t> order;
    for (int64_t i = 0; i < 2 * bytes; ++i)
      order.push_back(i);
    dots.push_back(vector::ShuffleOp::create(b, loc, low, high, order));
    return dots;
  }

  /// One step (elements [k0, k0 + rowStepElems())) of a decode tile:
  /// per dot, i32 products of each row's activation codes with each weight
  /// row's codes (started at the lanes' corrections for biased int8), then
  /// per output acc += float(dot) * (activation lanes' scales * weight
  /// lanes' scales) + the lanes' activation sums * weight lanes' offsets.
  /// lanesOf(j, d, part) gives column j's scales (part 0) or offsets (1)
  /// for the lanes of dot d.
  /// With `rowLanes` (superblockScaled), rowLanes(i, j, d) is row i's and
  /// column j's whole multiplier of dot d's lanes (the activation scale
  /// included) and there are no offsets here.
  SmallVector<Value> rowStep(ArrayRef<Value> r, ArrayRef<Value> q, Value k0, ValueRange accs,
                             function_ref<Value(int64_t, int64_t, int64_t)> lanesOf,
                             function_ref<Value(int64_t, int64_t, int64_t)> rowLanes = {}) {
    int64_t vw = dotLanes, tm = r.size(), tn = q.size(), dots = dotsPerStep();
    auto iVec = VectorType::get({vw}, b.getI32Type()), fVec = VectorType::get({vw}, b.getF32Type());
    prefetchNextTile(q, tn, arith::DivUIOp::create(b, loc, k0, cst(group)), k0, rowStepElems(),
                     /*scalesToo=*/stepScales);
    Value zeroI = arith::ConstantOp::create(b, loc, iVec, b.getZeroAttr(iVec));
    // Per row and dot: codes, lane scales, lane sums, corrections, and
    // residual codes where there are.
    SmallVector<Value> acts, ss, ms, cs, rests;
    auto byteVec = VectorType::get({dotCodes()}, b.getI8Type());
    for (Value local : r)
      for (int64_t d = 0; d < dots; ++d) {
        Value row = arith::AddIOp::create(b, loc, local, rowBase);
        Value at = arith::AddIOp::create(b, loc, k0, cst(d * dotCodes()));
        Value pos = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, row, depth), at);
        acts.push_back(vector::LoadOp::create(b, loc, byteVec, rowCodes.codes, ValueRange{pos}));
        Value lane = arith::DivUIOp::create(b, loc, pos, cst(4));
        if (!rowLanes)
          ss.push_back(vector::LoadOp::create(b, loc, fVec, rowCodes.scales, ValueRange{lane}));
        if (offsets && !rowLanes)
          ms.push_back(vector::LoadOp::create(b, loc, fVec, rowCodes.sums, ValueRange{lane}));
        cs.push_back(rowCodes.corrections
                         ? vector::LoadOp::create(b, loc, iVec, rowCodes.corrections,
                                                  ValueRange{lane})
                               .getResult()
                         : zeroI);
        if (rowCodes.residuals)
          rests.push_back(
              vector::LoadOp::create(b, loc, byteVec, rowCodes.residuals, ValueRange{pos}));
      }
    Value shift = arith::ConstantOp::create(
        b, loc, iVec, DenseElementsAttr::get(iVec, int32_t(llvm::Log2_64(kResidualSteps))));
    // Where every lane of the step's dots lies in the same group in each
    // dot (nibbles: a step's low and high halves of the same groups), the
    // dots' i32 sums add before one conversion and one scaling: lanes are
    // sums of up to 2 * 4 * 15 * (127 * 128 + 64) in i32.
    bool merged = nibbles && dots > 1;
    for (int64_t d = 1; d < dots && merged; ++d)
      for (int64_t l = 0; l < vw; ++l)
        merged &= groupOfLane(d, l) == groupOfLane(0, l);
    int64_t sets = merged ? 1 : dots, perSet = merged ? dots : 1;
    SmallVector<Value> next(accs.begin(), accs.end());
    for (auto [j, col] : llvm::enumerate(q)) {
      SmallVector<Value> ws = weightDots(col, k0);
      for (int64_t set = 0; set < sets; ++set) {
        int64_t d0 = set * perSet;
        Value scale = rowLanes ? Value() : lanesOf(j, d0, 0);
        Value offset = offsets && !rowLanes ? lanesOf(j, d0, 1) : Value();
        for (int64_t i = 0; i < tm; ++i) {
          Value sum = cs[i * dots + d0];
          for (int64_t d = d0; d < d0 + perSet; ++d)
            sum = dot(sum, ws[d], acts[i * dots + d]);
          // 128 * the codes' product + the residuals' (exact in i32:
          // |dot| <= 4 * 128 * 127 per lane and dot).
          if (!rests.empty()) {
            sum = arith::ShLIOp::create(b, loc, sum, shift);
            for (int64_t d = d0; d < d0 + perSet; ++d)
              sum = dot(sum, ws[d], rests[i * dots + d]);
          }
          Value p = arith::SIToFPOp::create(b, loc, fVec, sum);
          Value &acc = next[i * tn + j];
          if (rowLanes) {
            acc = vector::FMAOp::create(b, loc, p, rowLanes(i, j, d0), acc);
            continue;
          }
          // Merged dots' lanes have the same activation blocks: equal
          // lane scales.
          acc = vector::FMAOp::create(
              b, loc, p, arith::MulFOp::create(b, loc, ss[i * dots + d0], scale), acc);
          if (offsets)
            for (int64_t d = d0; d < d0 + perSet; ++d)
              acc = vector::FMAOp::create(b, loc, offset, ms[i * dots + d], acc);
        }
      }
    }
    return next;
  }

  /// Outputs C[m0 .. m0+tm, n0 .. n0+tn] of the decode kernel: steps of
  /// rowStep, then the tail step where there is one. The weights' lane
  /// scales: with superblocks, lanes of the superblock's scale vector
  /// (superblockParams, once per superblock and column; its steps
  /// unrolled); otherwise the step's groups' scales broadcast to their
  /// lanes.
  void rowTile(int64_t tm, int64_t tn, Value m0, Value n0) {
    int64_t vw = shape.vectorWidth, step = rowStepElems();
    auto fVec = VectorType::get({vw}, b.getF32Type());
    SmallVector<Value> r = indices(m0, tm), q = indices(n0, tn);
    Value zeros = arith::ConstantOp::create(b, loc, fVec, b.getZeroAttr(fVec));
    SmallVector<Value> inits(tm * tn, zeros);
    scf::ForOp loop;
    if (superblocks) {
      int64_t perBlock = 256 / group;
      loop = scf::ForOp::create(
          b, loc, cst(0), arith::DivUIOp::create(b, loc, depth, cst(256)), cst(1), inits,
          [&](OpBuilder &nb, Location, Value sb, ValueRange accs) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPointToStart(nb.getInsertionBlock());
            SmallVector<Value> params;
            for (Value col : q)
              params.push_back(superblockParams(col, sb));
            SmallVector<Value> current(accs.begin(), accs.end());
            // superblockScaled: per row and column, the weights' scales
            // times the row's activation scale, and the offsets applied.
            SmallVector<Value> scaled;
            if (superblockScaled())
              scaled = scaleSuperblock(r, params, sb, current);
            // Step s's dot d's lanes of a superblock vector (its groups,
            // from lane `first` on).
            auto lanes = [&](Value v, int64_t s, int64_t d, int64_t first = 0) {
              SmallVector<int64_t> mask;
              for (int64_t l = 0; l < vw; ++l)
                mask.push_back(first + superblockGroupOfLane(s, d, l));
              return vector::ShuffleOp::create(b, loc, v, v, mask).getResult();
            };
            for (int64_t s = 0; s < 256 / step; ++s) {
              Value k0 = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, sb, cst(256)),
                                               cst(s * step));
              auto lanesOf = [&](int64_t j, int64_t d, int64_t part) {
                return lanes(params[j], s, d, part * perBlock);
              };
              auto rowLanes = [&](int64_t i, int64_t j, int64_t d) {
                return lanes(scaled[i * q.size() + j], s, d);
              };
              // A superblock's scales are one line per row: prefetched by
              // its first step only.
              stepScales = s == 0;
              current = scaled.empty() ? rowStep(r, q, k0, current, lanesOf)
                                       : rowStep(r, q, k0, current, lanesOf, rowLanes);
              stepScales = true;
            }
            scf::YieldOp::create(b, loc, current);
          });
    } else {
      loop = scf::ForOp::create(
          b, loc, cst(0), arith::DivUIOp::create(b, loc, depth, cst(step)), cst(1), inits,
          [&](OpBuilder &nb, Location, Value st, ValueRange accs) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPointToStart(nb.getInsertionBlock());
            Value k0 = arith::MulIOp::create(b, loc, st, cst(step));
            scf::YieldOp::create(b, loc, groupStep(r, q, k0, accs));
          });
    }
    auto fast = arith::FastMathFlags::reassoc | arith::FastMathFlags::contract;
    SmallVector<Value> rowSums = sumLanesByRow(SmallVector<Value>(loop.getResults()), tm, tn);
    SmallVector<Value> extra;
    if (int64_t lanes = tailLanes()) {
      // The last 32 codes of a depth of odd 32s: one step at 8 lanes.
      Value odd = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne,
                                        arith::RemUIOp::create(b, loc, depth, cst(step)), cst(0));
      SmallVector<Type> types(tm * tn, b.getF32Type());
      auto tail = scf::IfOp::create(b, loc, types, odd, /*withElseRegion=*/true);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(tail.thenBlock());
        dotLanes = lanes;
        auto tailVec = VectorType::get({lanes}, b.getF32Type());
        Value tailZeros = arith::ConstantOp::create(b, loc, tailVec, b.getZeroAttr(tailVec));
        Value k0 = arith::MulIOp::create(
            b, loc, arith::DivUIOp::create(b, loc, depth, cst(step)), cst(step));
        SmallVector<Value> accs = groupStep(r, q, k0, SmallVector<Value>(tm * tn, tailZeros));
        dotLanes = shape.vectorWidth;
        SmallVector<Value> results;
        for (Value acc : accs)
          results.push_back(
              vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, acc, fast));
        scf::YieldOp::create(b, loc, results);
        b.setInsertionPointToStart(tail.elseBlock());
        Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
        scf::YieldOp::create(b, loc, SmallVector<Value>(tm * tn, zero));
      }
      extra.assign(tail.getResults().begin(), tail.getResults().end());
    }
    addRowSums(c, r, n0, rowSums, extra);
  }

  /// superblockScaled's work once per superblock `sb`: per row i and column
  /// j, params[j] (superblockParams) times row i's activation scale of the
  /// superblock (returned, [i * tn + j]); and with offsets, the offsets
  /// times the row's group sums added to accs[i * tn + j]: one FMA per
  /// vector of params that holds offsets (the lanes of the scales' half
  /// multiply zeros).
  SmallVector<Value> scaleSuperblock(ArrayRef<Value> r, ArrayRef<Value> params, Value sb,
                                     SmallVector<Value> &accs) {
    int64_t vw = shape.vectorWidth, perBlock = 256 / group;
    auto paramType = cast<VectorType>(params.front().getType());
    int64_t lanes = paramType.getNumElements();
    auto f32 = b.getF32Type();
    SmallVector<Value> scaled;
    for (Value local : r) {
      Value row = arith::AddIOp::create(b, loc, local, rowBase);
      // Lane sb * 64 of the row: its superblock's scale.
      Value at = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, row, arith::DivUIOp::create(b, loc, depth, cst(4))),
          arith::MulIOp::create(b, loc, sb, cst(64)));
      Value scale = vector::BroadcastOp::create(
          b, loc, paramType, memref::LoadOp::create(b, loc, rowCodes.scales, ValueRange{at}));
      Value sums;
      if (offsets) {
        Value first = arith::AddIOp::create(
            b, loc,
            arith::MulIOp::create(b, loc, row, arith::DivUIOp::create(b, loc, depth, cst(group))),
            arith::MulIOp::create(b, loc, sb, cst(perBlock)));
        auto sumType = VectorType::get({perBlock}, f32);
        Value groupSums = vector::LoadOp::create(b, loc, sumType, rowCodes.groupSums,
                                                 ValueRange{first});
        // [zeros for the scales' lanes, the group sums for the offsets'].
        SmallVector<int64_t> mask;
        for (int64_t l = 0; l < lanes; ++l)
          mask.push_back(l);
        Value zeros = arith::ConstantOp::create(b, loc, sumType, b.getZeroAttr(sumType));
        sums = vector::ShuffleOp::create(b, loc, zeros, groupSums, mask);
      }
      for (auto [j, p] : llvm::enumerate(params)) {
        scaled.push_back(arith::MulFOp::create(b, loc, p, scale));
        if (!offsets)
          continue;
        Value &acc = accs[scaled.size() - 1];
        for (int64_t c = perBlock / vw; c < lanes / vw; ++c) {
          SmallVector<int64_t> part;
          for (int64_t l = 0; l < vw; ++l)
            part.push_back(c * vw + l);
          auto slice = [&](Value v) {
            return lanes == vw ? v : vector::ShuffleOp::create(b, loc, v, v, part).getResult();
          };
          acc = vector::FMAOp::create(b, loc, slice(p), slice(sums), acc);
        }
      }
    }
    return scaled;
  }

  /// rowStep at element k0 for per-group scales: each dot's lanes take
  /// their group's scale and offset, read once per step and column and
  /// broadcast (selected by constant masks where a dot spans groups).
  SmallVector<Value> groupStep(ArrayRef<Value> r, ArrayRef<Value> q, Value k0, ValueRange accs) {
    int64_t vw = dotLanes, perStep = groupsPerStep();
    auto fVec = VectorType::get({vw}, b.getF32Type());
    Value g0 = arith::DivUIOp::create(b, loc, k0, cst(group));
    // Column j's scale or offset of the step's group t, broadcast.
    std::map<std::tuple<int64_t, int64_t, int64_t>, Value> read;
    auto groupParam = [&](int64_t j, int64_t t, int64_t part) {
      Value &v = read[{j, t, part}];
      if (!v)
        v = vector::BroadcastOp::create(
            b, loc, fVec, param(q[j], arith::AddIOp::create(b, loc, g0, cst(t)), part));
      return v;
    };
    return rowStep(r, q, k0, accs, [&](int64_t j, int64_t d, int64_t part) {
      Value v = groupParam(j, groupOfLane(d, 0), part);
      for (int64_t t = 1; t < perStep; ++t) {
        SmallVector<bool> in(vw);
        bool any = false;
        for (int64_t l = 0; l < vw; ++l)
          any |= in[l] = groupOfLane(d, l) == t;
        if (!any)
          continue;
        auto maskType = VectorType::get({vw}, b.getI1Type());
        Value mask = arith::ConstantOp::create(b, loc, maskType,
                                               DenseElementsAttr::get(maskType, ArrayRef(in)));
        v = arith::SelectOp::create(b, loc, mask, groupParam(j, t, part), v);
      }
      return v;
    });
  }

  /// Row groups (of vector-width rows, one per lane) per int8 tile.
  static constexpr int64_t kInt8Groups = 2;

  /// The int8 dot products: work items of blockN weight rows as the float
  /// kernel's; inside, tiles of kInt8Groups groups of vector-width
  /// activation rows (one per lane: the weights' scales then apply to whole
  /// vectors) x tile-n weight rows. This kernel's rows are rows
  /// [first, first + rows) of `q`, whose groups need not start at `first`:
  /// the tiles cover the groups that hold them, and lanes of other rows are
  /// computed and not stored.
  void int8Sweep(const QuantizedRows &q, Value first, bool parallel) {
    int64_t vw = shape.vectorWidth;
    quantized = q;
    units = arith::DivUIOp::create(b, loc, depth, cst(unit));
    words = arith::DivUIOp::create(b, loc, depth, cst(4));
    firstRow = first;
    firstGroup = arith::DivUIOp::create(b, loc, first, cst(vw));
    Value endGroup = arith::CeilDivUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, first, rows), cst(vw));
    Value count = arith::SubIOp::create(b, loc, endGroup, firstGroup);
    if (onTiles())
      return amxSweep(count, parallel);
    sweepRowBlocks(count, cols, kInt8Groups, shape, parallel,
                   [&](int64_t tg, int64_t tn, Value g0, Value n0) { int8Tile(tg, tn, g0, n0); });
  }

  // The int8 tiles: 16 weight rows x a block's codes (the left operand),
  // the block's 4-code words x 16 activation rows as the quantized rows lay
  // out a group (the right one), 16 x 16 i32 sums.

  /// Whether the int8 products run on AMX tiles (tdpbssd): 16 lanes,
  /// blocks of at most 64 codes; nibbles (groups of 32) are unpacked to
  /// bytes first, 16 weight rows at a time (unpackRows).
  bool onTiles() const {
    return shape.amx && shape.vectorWidth == kTileRows && unit % 4 == 0 && unit <= 64 &&
           (!nibbles || unit == 32);
  }

  /// Weight rows n0 .. n0 + 16's nibbles as one byte per code, in order,
  /// into `unpacked` [16, depth] (a group of 32 is 16 bytes: byte e holds
  /// codes e, low nibble, and 16 + e, high). Once per 16 rows, for every
  /// group of activation rows that passes over them.
  void unpackRows(Value n0) {
    auto bytes = VectorType::get({16}, b.getI8Type());
    auto splat = [&](int8_t v) {
      return arith::ConstantOp::create(b, loc, bytes, DenseElementsAttr::get(bytes, v)).getResult();
    };
    Value low = splat(0x0F), four = splat(4);
    forLoop(cst(0), cst(kTileRows), cst(1), [&](Value r) {
      Value row = arith::AddIOp::create(b, loc, n0, r);
      forLoop(cst(0), arith::DivUIOp::create(b, loc, depth, cst(32)), cst(1), [&](Value g) {
        Value v = vector::LoadOp::create(b, loc, bytes, data,
                                         ValueRange{row, arith::MulIOp::create(b, loc, g, cst(16))});
        Value at = arith::MulIOp::create(b, loc, g, cst(32));
        vector::StoreOp::create(b, loc, arith::AndIOp::create(b, loc, v, low), unpacked,
                                ValueRange{r, at});
        vector::StoreOp::create(
            b, loc, arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, v, four), low),
            unpacked, ValueRange{r, arith::AddIOp::create(b, loc, at, cst(16))});
      });
    });
  }

  /// The int8 products on AMX tiles: per block of `unit` codes, one
  /// tdpbssd multiplies 16 weight rows' codes as stored (signed: no bias,
  /// no corrections) by one group's 16 activation rows, C transposed; the
  /// sums go through the work item's buffer into the same per-block
  /// scaling as the vector kernel's (int8Tile with 1 group x 16 weight
  /// rows, whose accumulators are columns of C over the group's rows).
  /// Work items are blocks of weight rows (blockN rounded up to 16); in
  /// each, every group passes over each 16 rows' codes while they are in
  /// cache. Weight rows past whole tiles of 16 take the vector kernel.
  void amxSweep(Value count, bool parallel) {
    int64_t block = std::max<int64_t>(1, llvm::divideCeil(shape.blockN, kTileRows)) * kTileRows;
    forEachRowBlock(cols, block, kTileRows, parallel, [&](Value lo, Value hi) {
      Value tileEnd = wholeSteps(lo, hi, kTileRows);
      tileSums = memref::AllocOp::create(b, loc, MemRefType::get({4 * kTileArea}, b.getI32Type()),
                                         b.getI64IntegerAttr(64));
      if (nibbles)
        unpacked = memref::AllocOp::create(
            b, loc, MemRefType::get({kTileRows, ShapedType::kDynamic}, b.getI8Type()),
            ValueRange{depth}, b.getI64IntegerAttr(64));
      forLoop(lo, tileEnd, cst(kTileRows), [&](Value n0) {
        if (nibbles)
          unpackRows(n0);
        forLoop(cst(0), count, cst(1), [&](Value g) { int8Tile(1, kTileRows, g, n0); });
      });
      Value buffer = tileSums;
      tileSums = nullptr;
      if (unpacked)
        memref::DeallocOp::create(b, loc, unpacked);
      unpacked = nullptr;
      Value pairs = arith::MulIOp::create(
          b, loc, arith::DivUIOp::create(b, loc, count, cst(kInt8Groups)), cst(kInt8Groups));
      forLoop(tileEnd, hi, cst(1), [&](Value n0) {
        forLoop(cst(0), pairs, cst(kInt8Groups),
                [&](Value g) { int8Tile(kInt8Groups, 1, g, n0); });
        forLoop(pairs, count, cst(1), [&](Value g) { int8Tile(1, 1, g, n0); });
      });
      memref::DeallocOp::create(b, loc, buffer);
    });
  }

  /// The i32 sums of blocks `us` for weight rows n0 .. n0 + 16 and group
  /// `group`'s rows on AMX tiles, block us[i] stored to slot slots[i] of
  /// the work item's buffer: 16 rows (weight rows) of 16 lanes (the
  /// group's rows). Every product is issued before any store, so two
  /// blocks' products sit in different tile registers and overlap (tile
  /// registers are not renamed: a tile reused at once waits on the store).
  void storeTileSums(Value group, ArrayRef<Value> us, Value n0, ArrayRef<Value> slots) {
    Type i8 = b.getI8Type(), i32 = b.getI32Type();
    auto weightsType = amx::TileType::get({kTileRows, unit}, i8);
    auto actsType = amx::TileType::get({unit / 4, 4 * kTileRows}, i8);
    auto sumsType = amx::TileType::get({kTileRows, kTileRows}, i32);
    SmallVector<Value> products;
    for (Value u : us) {
      Value zero = amx::TileZeroOp::create(b, loc, sumsType);
      // Nibbles from their unpacked rows.
      Value weights = amx::TileLoadOp::create(
          b, loc, weightsType, unpacked ? unpacked : data,
          ValueRange{unpacked ? cst(0) : n0, arith::MulIOp::create(b, loc, u, cst(unit))});
      Value word = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, group, words),
                                         arith::MulIOp::create(b, loc, u, cst(unit / 4)));
      Value acts = amx::TileLoadOp::create(
          b, loc, actsType, quantized.codes,
          ValueRange{arith::MulIOp::create(b, loc, word, cst(kTileRows))}, cst(kTileRows));
      products.push_back(amx::TileMulIOp::create(b, loc, sumsType, weights, acts, zero));
    }
    for (auto [product, slot] : llvm::zip(products, slots))
      amx::TileStoreOp::create(b, loc, tileSums,
                               ValueRange{arith::MulIOp::create(b, loc, slot, cst(kTileArea))},
                               product, cst(kTileRows));
  }

  /// Block u's sums for weight rows n0 .. n0 + 16 and `group`'s rows, one
  /// vector per weight row. The blocks are pipelined through the buffer's
  /// slots: block u's sums were stored a step or two before (the first
  /// ones before the loop, by int8Tile); a step first issues the product
  /// of the block `ahead` on (the last block's again past the end), whose
  /// latency then overlaps this block's scaling instead of every step
  /// waiting on its own product. In pairs (tilePairs), the first step of a
  /// pair issues both products two blocks on, the second none.
  SmallVector<Value> tileBlockSums(Value group, Value u, Value n0) {
    int64_t ahead = tilePairs ? 2 : 1, slotCount = 2 * ahead;
    Value last = arith::SubIOp::create(b, loc, units, cst(1));
    SmallVector<Value> us, slots;
    for (int64_t i = 0; i < (tilePairs ? 2 * (1 - tilePhase) : 1); ++i) {
      Value later = arith::AddIOp::create(b, loc, u, cst(ahead + i));
      us.push_back(arith::MinUIOp::create(b, loc, later, last));
      slots.push_back(arith::RemUIOp::create(b, loc, later, cst(slotCount)));
    }
    if (!us.empty())
      storeTileSums(group, us, n0, slots);
    Value base = arith::MulIOp::create(
        b, loc, arith::RemUIOp::create(b, loc, u, cst(slotCount)), cst(kTileArea));
    SmallVector<Value> sums;
    auto rowType = VectorType::get({kTileRows}, b.getI32Type());
    for (int64_t j = 0; j < kTileRows; ++j)
      sums.push_back(vector::LoadOp::create(
          b, loc, rowType, tileSums,
          ValueRange{arith::AddIOp::create(b, loc, base, cst(j * kTileRows))}));
    return sums;
  }

  /// Weight row n's four bytes from byte `byte` on, as one i32.
  Value weightWord(Value n, Value byte) {
    Value bytes = vector::LoadOp::create(b, loc, VectorType::get({4}, b.getI8Type()), data,
                                         ValueRange{n, byte});
    Value word = vector::BitCastOp::create(b, loc, VectorType::get({1}, b.getI32Type()), bytes);
    return vector::ExtractOp::create(b, loc, word, ArrayRef<int64_t>{0});
  }

  /// Whether the dot products are AArch64's sdot (4 lanes; signed x
  /// signed: the weights' int8 codes need no bias) rather than x86's
  /// vpdpbusd (unsigned x signed).
  bool sdot() const { return shape.vectorWidth == 4; }

  Value dot(Value acc, Value weights, Value acts) {
    return dotProduct(b, loc, cast<VectorType>(acc.getType()).getNumElements(), acc, weights, acts);
  }

  /// Outputs C[rows of groups g0 .. g0+tg, n0 .. n0+tn], one lane per
  /// activation row: per block of `unit` columns, i32 dot products of the
  /// weights' codes as unsigned bytes (int8 codes biased by 128, corrected
  /// by the activations' code sums; nibbles as they are) broadcast to every
  /// lane with each lane's row of activation codes, then per output
  /// acc += float(dot) * (activation scale * weight scale) + activation sum
  /// * weight offset.
  void int8Tile(int64_t tg, int64_t tn, Value g0, Value n0) {
    int64_t vw = shape.vectorWidth;
    Type i32 = b.getI32Type(), f32 = b.getF32Type();
    auto iVec = VectorType::get({vw}, i32), fVec = VectorType::get({vw}, f32);
    SmallVector<Value> q = indices(n0, tn);
    // The tile's groups in the quantized rows.
    SmallVector<Value> groupsOf =
        indices(arith::AddIOp::create(b, loc, firstGroup, g0), tg);
    Value zeroF = arith::ConstantOp::create(b, loc, fVec, b.getZeroAttr(fVec));
    Value zeroI = arith::ConstantOp::create(b, loc, iVec, b.getZeroAttr(iVec));
    auto splat = [&](int32_t v) {
      return arith::ConstantOp::create(b, loc, iVec, DenseElementsAttr::get(iVec, v)).getResult();
    };
    Value bias = splat(static_cast<int32_t>(0x80808080u)), low = splat(0x0F0F0F0F),
          four = splat(4);
    SmallVector<Value> inits(tg * tn, zeroF);
    // Block u's products from `accs`; paramOf(j, part) gives column j's
    // scale (part 0) or offset (part 1) of the block's group, broadcast.
    auto unitStep = [&](Value u, ValueRange accs, ParamFn paramOf) -> SmallVector<Value> {
          // Group i's block u: its slot among the groups' blocks.
          SmallVector<Value> blockOf;
          for (Value g : groupsOf)
            blockOf.push_back(
                arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, g, units), u));
          // The block's i32 sums per (group, weight row): on tiles, or by
          // VNNI dot products of each weight row's codes broadcast to every
          // lane.
          auto vectorSums = [&] {
            SmallVector<Value> sums;
            for (int64_t i = 0; i < tg; ++i) {
              Value init = zeroI;
              if (!nibbles && !sdot())
                init = vector::LoadOp::create(
                    b, loc, iVec, quantized.corrections,
                    ValueRange{arith::MulIOp::create(b, loc, blockOf[i], cst(vw))});
              sums.append(tn, init);
            }
            // Word c of this block of group i's rows.
            Value firstWord = arith::MulIOp::create(b, loc, u, cst(unit / 4));
            auto acts = [&](int64_t i, int64_t c) {
              Value word = arith::AddIOp::create(
                  b, loc, arith::MulIOp::create(b, loc, groupsOf[i], words),
                  arith::AddIOp::create(b, loc, firstWord, cst(c)));
              return vector::LoadOp::create(b, loc, iVec, quantized.codes,
                                            ValueRange{arith::MulIOp::create(b, loc, word, cst(vw))})
                  .getResult();
          };
          auto accumulate = [&](int64_t j, int64_t c, Value weights) {
            for (int64_t i = 0; i < tg; ++i)
              sums[i * tn + j] = dot(sums[i * tn + j], weights, acts(i, c));
          };
          if (!nibbles) {
            Value firstByte = arith::MulIOp::create(b, loc, u, cst(unit));
            for (int64_t c = 0; c < unit / 4; ++c)
              for (int64_t j = 0; j < tn; ++j) {
                Value w = weightWord(q[j], arith::AddIOp::create(b, loc, firstByte, cst(4 * c)));
                Value ws = vector::BroadcastOp::create(b, loc, iVec, w);
                accumulate(j, c, sdot() ? ws : arith::XOrIOp::create(b, loc, ws, bias).getResult());
              }
          } else {
            // A group of 32 is 16 bytes: byte e holds elements e (low
            // nibble) and 16 + e (high).
            Value firstByte = arith::MulIOp::create(b, loc, u, cst(16));
            for (int64_t c = 0; c < 4; ++c)
              for (int64_t j = 0; j < tn; ++j) {
                Value w = weightWord(q[j], arith::AddIOp::create(b, loc, firstByte, cst(4 * c)));
                Value ws = vector::BroadcastOp::create(b, loc, iVec, w);
                accumulate(j, c, arith::AndIOp::create(b, loc, ws, low));
                accumulate(j, c + 4,
                           arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, ws, four),
                                                 low));
              }
          }
          return sums;
          };
          SmallVector<Value> sums =
              tileSums ? tileBlockSums(groupsOf[0], u, q[0]) : vectorSums();
          SmallVector<Value> ws, os, as, ss;
          for (int64_t j = 0; j < tn; ++j) {
            ws.push_back(paramOf(j, 0));
            if (offsets)
              os.push_back(paramOf(j, 1));
          }
          for (int64_t i = 0; i < tg; ++i) {
            Value slot = arith::MulIOp::create(b, loc, blockOf[i], cst(2 * vw));
            ss.push_back(vector::LoadOp::create(b, loc, fVec, quantized.stats, ValueRange{slot}));
            if (offsets)
              as.push_back(vector::LoadOp::create(
                  b, loc, fVec, quantized.stats,
                  ValueRange{arith::AddIOp::create(b, loc, slot, cst(vw))}));
          }
          SmallVector<Value> next;
          for (int64_t i = 0; i < tg; ++i)
            for (int64_t j = 0; j < tn; ++j) {
              Value scale = arith::MulFOp::create(b, loc, ss[i], ws[j]);
              Value p = arith::SIToFPOp::create(b, loc, fVec, sums[i * tn + j]);
              Value acc = vector::FMAOp::create(b, loc, p, scale, accs[i * tn + j]);
              next.push_back(offsets ? vector::FMAOp::create(b, loc, as[i], os[j], acc).getResult()
                                     : acc);
            }
          return next;
    };
    // On tiles, the first blocks' products go first (tileBlockSums), in
    // pairs where the loop's count is known to be even (not superblocks,
    // whose loop is nested per superblock).
    int64_t staticDepth = cast<MemRefType>(a.getType()).getDimSize(1);
    tilePairs = tileSums && !superblocks && !ShapedType::isDynamic(staticDepth) &&
                staticDepth % (2 * unit) == 0;
    if (tileSums) {
      SmallVector<Value> first = {cst(0)};
      if (tilePairs)
        first.push_back(cst(1));
      storeTileSums(groupsOf[0], first, q[0], first);
    }
    // The blocks are the groups when the weights have superblocks (Q4_K,
    // Q5_K: 32; Q6_K: 16).
    scf::ForOp unitLoop = groupLoop(q, units, group / unit, inits, fVec, unitStep, tilePairs);
    // On tiles (one group x 16 weight rows), the accumulators transposed to
    // C's rows: 16 contiguous row updates instead of 16 gathers and
    // scatters, which cost about as much as the tile's whole depth of 1024.
    if (tileSums)
      return addGroupColumns(c, rows, firstRow, groupsOf[0],
                             SmallVector<Value>(unitLoop.getResults()), q[0]);
    // Each accumulator is a column of C over a group's rows: added with a
    // masked gather and scatter along C's rows (lane l of group G is this
    // kernel's row G * vw + l - first, stored when in [0, rows)).
    auto strided = memref::ExtractStridedMetadataOp::create(b, loc, c);
    Value rowStride = vector::BroadcastOp::create(
        b, loc, iVec, arith::IndexCastOp::create(b, loc, i32, strided.getStrides()[0]));
    SmallVector<int32_t> steps;
    for (int64_t l = 0; l < vw; ++l)
      steps.push_back(l);
    Value step = arith::ConstantOp::create(b, loc, iVec, DenseElementsAttr::get(iVec, ArrayRef(steps)));
    Value rowCount = vector::BroadcastOp::create(
        b, loc, iVec, arith::IndexCastOp::create(b, loc, i32, rows));
    for (int64_t i = 0; i < tg; ++i) {
      Value start = arith::SubIOp::create(
          b, loc, arith::MulIOp::create(b, loc, groupsOf[i], cst(vw)), firstRow);
      Value local = arith::AddIOp::create(
          b, loc, step,
          vector::BroadcastOp::create(b, loc, iVec, arith::IndexCastOp::create(b, loc, i32, start)));
      Value mask = arith::AndIOp::create(
          b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, local, zeroI),
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, local, rowCount));
      Value offsets = arith::MulIOp::create(b, loc, local, rowStride);
      for (int64_t j = 0; j < tn; ++j) {
        Value old = vector::GatherOp::create(b, loc, fVec, c, ValueRange{cst(0), q[j]}, offsets,
                                             mask, zeroF);
        Value sum = arith::AddFOp::create(b, loc, old, unitLoop.getResult(i * tn + j));
        vector::ScatterOp::create(b, loc, Type(), c, ValueRange{cst(0), q[j]}, offsets, mask,
                                  sum);
      }
    }
  }

  /// The prefetches for the tile `ahead` tiles on, issued while this tile
  /// runs the step over elements [start, start + stepElems) of its rows.
  /// A tile's tn weight rows are consecutive, so its codes are one
  /// contiguous span of tn rows' bytes; reading it row by row, a few bytes
  /// of each row per step, jumps back and forth inside the span, which the
  /// hardware prefetchers follow poorly (a 2-thread read of such tiles:
  /// 20-35 GB/s here, against 50 GB/s in address order). So each step
  /// prefetches its share of that later span in address order: the lines
  /// that step's fraction of the tile's codes covers. The scales, a few
  /// bytes per row and group, are prefetched per row.
  /// The bytes of one weight row's scales (and offsets), when static.
  std::optional<int64_t> scaleRowBytes() const {
    auto type = cast<MemRefType>(scales.getType());
    int64_t bytes = std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
    for (int64_t d = 1; d < type.getRank(); ++d) {
      if (ShapedType::isDynamic(type.getDimSize(d)))
        return std::nullopt;
      bytes *= type.getDimSize(d);
    }
    return bytes;
  }

  /// The next tile's scale rows, every cache line of them, prefetched once
  /// before this tile's group loop (a Q8_0 row of 1024 has 64 bytes of
  /// scales, one line): per group, that took a prefetch per weight row
  /// that was a repeat 31 times in 32.
  void prefetchNextScales(ArrayRef<Value> q, int64_t tn) {
    auto type = cast<MemRefType>(scales.getType());
    int64_t elemBytes = std::max<int64_t>(1, type.getElementTypeBitWidth() / 8);
    int64_t rowBytes = *scaleRowBytes();
    int64_t inner = type.getRank() == 3 ? type.getDimSize(2) : 1;
    for (Value col : q) {
      Value next = nextRow(col, tn, cols);
      for (int64_t at = 0; at < rowBytes; at += 64) {
        int64_t e = at / elemBytes;
        SmallVector<Value> index = {next, cst(e / inner)};
        if (type.getRank() == 3)
          index.push_back(cst(e % inner));
        memref::PrefetchOp::create(b, loc, scales, index, /*isWrite=*/false,
                                   /*localityHint=*/weightPrefetchLocality(shape),
                                   /*isDataCache=*/true);
      }
    }
  }

  void prefetchNextTile(ArrayRef<Value> q, int64_t tn, Value g, Value start, int64_t stepElems,
                        bool scalesToo = true) {
    auto dataType = cast<MemRefType>(data.getType());
    int64_t rowBytes = dataType.getDimSize(1);
    if (!ShapedType::isDynamic(rowBytes)) {
      int64_t perByte = nibbles ? 2 : 1; // elements per stored byte
      int64_t stepBytes = tn * stepElems / perByte;
      int64_t tileBytes = tn * rowBytes;
      // prefetchBytes on, in whole tiles (at least the next). 4 KB: two
      // tiles for a Q4_K tile of 4 rows of 1024 (2 KB); on the Intel VMs
      // measured no faster further on, slower at 4 and 8 tiles (the lines
      // evicted before their turn). On a Zen 4 VM 8 KB was best: Q4_K_M
      // decode +4%, Q8_0 +10-11%, 12 and 16 KB slower again.
      int64_t ahead =
          std::clamp<int64_t>(llvm::divideCeil(shape.prefetchBytes, tileBytes), 1, 8);
      // The byte of the later span where this step's share begins.
      Value from = arith::AddIOp::create(
          b, loc,
          arith::MulIOp::create(b, loc, arith::AddIOp::create(b, loc, q.front(), cst(ahead * tn)),
                                cst(rowBytes)),
          arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, start, cst(perByte)),
                                cst(tn)));
      prefetchSpan(data, cols, rowBytes, 1, from, stepBytes, weightPrefetchLocality(shape));
    } else {
      Value byte = nibbles ? arith::DivUIOp::create(b, loc, start, cst(2)).getResult() : start;
      for (Value col : q)
        memref::PrefetchOp::create(b, loc, data, ValueRange{nextRow(col, tn, cols), byte},
                                   /*isWrite=*/false,
                                   /*localityHint=*/weightPrefetchLocality(shape),
                                   /*isDataCache=*/true);
    }
    if (!scalesToo)
      return;
    for (Value col : q) {
      Value next = nextRow(col, tn, cols);
      Value block = superblocks ? arith::DivUIOp::create(b, loc, g, cst(256 / group)).getResult() : g;
      memref::PrefetchOp::create(b, loc, scales, ValueRange{next, block, cst(0)}, /*isWrite=*/false,
                                 /*localityHint=*/weightPrefetchLocality(shape),
                                 /*isDataCache=*/true);
    }
  }

  using ParamFn = function_ref<Value(int64_t, int64_t)>;
  using StepFn = function_ref<SmallVector<Value>(Value, ValueRange, ParamFn)>;

  /// The loop over `count` steps (blocks of the weights' groups, `perGroup`
  /// to a group) from `inits`, running step(i, accs, paramOf), where
  /// paramOf(j, part) is column q[j]'s scale (part 0) or offset (part 1) of
  /// step i's group, broadcast to `vecType`: read per step, or, with
  /// superblock scales and steps that are the groups, formed once per
  /// superblock as one vector (superblockParams) from which each group
  /// broadcasts its lanes, as the per-group forms broadcast theirs from
  /// memory. (Per-group f16 and byte reads cost more than a decode group's
  /// products: 82 against 117 tok/s on Mixtral-shaped Q4_K; the groups
  /// unrolled over the vectors spilled them.)
  scf::ForOp groupLoop(ArrayRef<Value> q, Value count, int64_t perGroup, ValueRange inits,
                       VectorType vecType, StepFn step, bool pairs = false) {
    // Two steps per iteration (a count known to be even): step i, then i + 1.
    if (pairs)
      return scf::ForOp::create(
          b, loc, cst(0), count, cst(2), inits,
          [&](OpBuilder &nb, Location, Value i, ValueRange accs) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPointToStart(nb.getInsertionBlock());
            SmallVector<Value> next(accs.begin(), accs.end());
            for (int64_t half = 0; half < 2; ++half) {
              Value at = half ? arith::AddIOp::create(b, loc, i, cst(1)).getResult() : i;
              Value g = arith::DivUIOp::create(b, loc, at, cst(perGroup));
              tilePhase = half;
              next = step(at, next, [&](int64_t j, int64_t part) {
                return broadcastParam(q[j], g, part, vecType);
              });
            }
            scf::YieldOp::create(b, loc, next);
          });
    if (!superblocks || perGroup != 1)
      return scf::ForOp::create(
          b, loc, cst(0), count, cst(1), inits,
          [&](OpBuilder &nb, Location, Value i, ValueRange accs) {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPointToStart(nb.getInsertionBlock());
            Value g = arith::DivUIOp::create(b, loc, i, cst(perGroup));
            scf::YieldOp::create(b, loc, step(i, accs, [&](int64_t j, int64_t part) {
                                   return broadcastParam(q[j], g, part, vecType);
                                 }));
          });
    int64_t perBlock = 256 / group;
    return scf::ForOp::create(
        b, loc, cst(0), arith::DivUIOp::create(b, loc, count, cst(perBlock)), cst(1), inits,
        [&](OpBuilder &nb, Location, Value sb, ValueRange accs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nb.getInsertionBlock());
          SmallVector<Value> blockParams;
          for (Value col : q)
            blockParams.push_back(superblockParams(col, sb));
          Value first = arith::MulIOp::create(b, loc, sb, cst(perBlock));
          auto inBlock = scf::ForOp::create(
              b, loc, cst(0), cst(perBlock), cst(1), accs,
              [&](OpBuilder &nb2, Location, Value jj, ValueRange blockAccs) {
                OpBuilder::InsertionGuard guard2(b);
                b.setInsertionPointToStart(nb2.getInsertionBlock());
                Value g = arith::AddIOp::create(b, loc, first, jj);
                Value offsetLane = arith::AddIOp::create(b, loc, jj, cst(perBlock));
                scf::YieldOp::create(b, loc, step(g, blockAccs, [&](int64_t j, int64_t part) {
                                       return broadcastLane(blockParams[j],
                                                            part ? offsetLane : jj);
                                     }));
              });
          scf::YieldOp::create(b, loc, inBlock.getResults());
        });
  }

  /// Weight row `n`'s scales and offsets of superblock `sb`'s groups, as
  /// one vector of P * 256 / group f32 (the scales, then the offsets): the
  /// P signed bytes per group are contiguous, each times its f16 number.
  Value superblockParams(Value n, Value sb) {
    int64_t perBlock = 256 / group, parts = offsets ? 2 : 1, lanes = parts * perBlock;
    auto floats = VectorType::get({lanes}, b.getF32Type());
    Value subs = vector::LoadOp::create(b, loc, VectorType::get({lanes}, b.getI8Type()), scales,
                                        ValueRange{n, sb, cst(2 * parts)});
    auto number = [&](int64_t part) -> Value {
      return vector::BroadcastOp::create(b, loc, floats, superblockNumber(n, sb, part));
    };
    Value numbers = number(0);
    if (offsets) {
      // Lanes [0, perBlock) take d, the rest -dmin.
      SmallVector<bool> first(lanes, false);
      for (int64_t l = 0; l < perBlock; ++l)
        first[l] = true;
      auto maskType = VectorType::get({lanes}, b.getI1Type());
      Value mask = arith::ConstantOp::create(b, loc, maskType,
                                             DenseElementsAttr::get(maskType, ArrayRef(first)));
      numbers = arith::SelectOp::create(b, loc, mask, numbers, number(1));
    }
    return arith::MulFOp::create(b, loc, numbers, arith::SIToFPOp::create(b, loc, floats, subs));
  }

  /// Weight row `n`'s f16 number `part` (d, or -dmin) of superblock `sb`,
  /// stored as two bytes, as f32.
  Value superblockNumber(Value n, Value sb, int64_t part) {
    Value pair = vector::LoadOp::create(b, loc, VectorType::get({2}, b.getI8Type()), scales,
                                        ValueRange{n, sb, cst(2 * part)});
    Value word = vector::BitCastOp::create(b, loc, VectorType::get({1}, b.getI16Type()), pair);
    Value bits = vector::ExtractOp::create(b, loc, word, ArrayRef<int64_t>{0});
    Value half = arith::BitcastOp::create(b, loc, b.getF16Type(), bits);
    return arith::ExtFOp::create(b, loc, b.getF32Type(), half);
  }

  /// Lane `lane` (an index) of `v` broadcast to the kernel's vector width.
  /// (LLVM reads the lane from a stack copy of `v`; a vpermps per lane on
  /// AVX-512 measured slower in decode: it competes with the FMAs, where a
  /// broadcast from memory uses a load port.)
  Value broadcastLane(Value v, Value lane) {
    auto vecType = VectorType::get({shape.vectorWidth}, b.getF32Type());
    return vector::BroadcastOp::create(
        b, loc, vecType, vector::ExtractOp::create(b, loc, v, ArrayRef<OpFoldResult>{lane}));
  }

  /// Weight row `n`'s group `g` scale (part 0) or offset (part 1), as f32:
  /// read, or (superblocks) the superblock's f16 number times the group's
  /// signed byte.
  /// param(n, g, part) broadcast to `vecType`. An f16 scale is broadcast
  /// before it is widened: one vpbroadcastw and one vector vcvtph2ps,
  /// where widening the scalar first takes three instructions (a decode
  /// tile converts tn scales per group: Q8_0's loop had 12 of its 62
  /// instructions per 128 weights on them).
  Value broadcastParam(Value n, Value g, int64_t part, VectorType vecType) {
    // At 16 lanes (AVX-512, which implies F16C) only: elsewhere a vector
    // widening may have no instruction (AVX without F16C) and be split into
    // per-lane calls.
    Type stored = getElementTypeOrSelf(scales.getType());
    if (superblocks || !stored.isF16() || shape.vectorWidth != 16)
      return vector::BroadcastOp::create(b, loc, vecType, param(n, g, part));
    Value v = memref::LoadOp::create(b, loc, scales, ValueRange{n, g, cst(part)});
    Value halves = vector::BroadcastOp::create(
        b, loc, VectorType::get(vecType.getShape(), stored), v);
    return arith::ExtFOp::create(b, loc, vecType, halves);
  }

  Value param(Value n, Value g, int64_t part) {
    if (superblocks) {
      int64_t perBlock = 256 / group, parts = offsets ? 2 : 1;
      Value block = arith::DivUIOp::create(b, loc, g, cst(perBlock));
      Value inBlock = arith::RemUIOp::create(b, loc, g, cst(perBlock));
      Value number = superblockNumber(n, block, part);
      Value sub = memref::LoadOp::create(
          b, loc, scales,
          ValueRange{n, block, arith::AddIOp::create(b, loc, inBlock, cst(2 * parts + part * perBlock))});
      return arith::MulFOp::create(b, loc, number,
                                   arith::SIToFPOp::create(b, loc, b.getF32Type(), sub));
    }
    Value v = memref::LoadOp::create(b, loc, scales, ValueRange{n, g, cst(part)});
    if (!v.getType().isF32())
      v = arith::ExtFOp::create(b, loc, b.getF32Type(), v);
    return v;
  }

  /// The f32 vector of weight row `n`'s elements [k, k + vw).
  Value weights(Value n, Value k) {
    int64_t vw = shape.vectorWidth;
    auto f32Vec = VectorType::get({vw}, b.getF32Type());
    Type elem = getElementTypeOrSelf(data.getType());
    auto codeVec = VectorType::get({vw}, elem);
    if (!nibbles) {
      Value codes = vector::LoadOp::create(b, loc, codeVec, data, ValueRange{n, k});
      if (isa<Float8E4M3FNType>(elem))
        return arith::ExtFOp::create(b, loc, f32Vec, codes);
      return arith::SIToFPOp::create(b, loc, f32Vec, codes);
    }
    // Element e of a group of 32: byte e % 16 of the group's 16, the high
    // nibble for e >= 16. A vector of vw <= 16 never straddles the halves.
    Value inGroup = arith::RemUIOp::create(b, loc, k, cst(32));
    Value byte = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, k, cst(32)), cst(16)),
        arith::RemUIOp::create(b, loc, inGroup, cst(16)));
    Value codes = vector::LoadOp::create(b, loc, codeVec, data, ValueRange{n, byte});
    Type i8 = b.getI8Type();
    Value high = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, inGroup, cst(16));
    Value shift = arith::SelectOp::create(b, loc, high, arith::ConstantIntOp::create(b, loc, i8, 4),
                                          arith::ConstantIntOp::create(b, loc, i8, 0));
    Value shifts = vector::BroadcastOp::create(b, loc, codeVec, shift);
    Value mask = arith::ConstantOp::create(
        b, loc, codeVec, DenseElementsAttr::get(codeVec, b.getIntegerAttr(i8, 15)));
    Value nib = arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, codes, shifts), mask);
    return arith::UIToFPOp::create(b, loc, f32Vec, nib);
  }

  /// Outputs C[m0 .. m0+tm, n0 .. n0+tn], group by group. One activation
  /// row (decode): per-group products and the activations' group sums,
  /// scaled once per group (two FMAs per output). More rows (prefill): each
  /// weight vector dequantized in registers (one FMA: scale * code + offset)
  /// and multiplied into the tm x tn accumulators directly; the per-group
  /// sums would keep 2 * tm * tn + tm vectors live (36 at 4 x 4, more than
  /// AVX-512's 32 registers), this tm * tn + tm + tn.
  void tile(int64_t tm, int64_t tn, Value m0, Value n0) {
    auto fast = arith::FastMathFlags::reassoc | arith::FastMathFlags::contract;
    int64_t vw = shape.vectorWidth;
    bool groupSums = tm == 1;
    SmallVector<Value> r = indices(m0, tm), q = indices(n0, tn);
    auto vecType = VectorType::get({vw}, b.getF32Type());
    Value zeros = arith::ConstantOp::create(b, loc, vecType, DenseElementsAttr::get(vecType, 0.0f));
    SmallVector<Value> inits(tm * tn, zeros);
    // Group g's steps from `accs`; paramOf(j, part) gives column j's scale
    // (part 0) or offset (part 1) of the group as f32.
    // A row's scales of at most 4 lines are prefetched before the loop.
    std::optional<int64_t> scaleBytes = scaleRowBytes();
    bool hoistScales = scaleBytes && *scaleBytes <= 256;
    auto groupStep = [&](Value g, ValueRange accs, ParamFn paramOf) -> SmallVector<Value> {
      Value base = arith::MulIOp::create(b, loc, g, cst(group));
      prefetchNextTile(q, tn, g, base, group, /*scalesToo=*/!hoistScales);
      // Each column's (scale, offset) of this group, broadcast.
      SmallVector<Value> ss, os;
      auto loadScales = [&] {
        for (int64_t j = 0; j < tn; ++j) {
          ss.push_back(paramOf(j, 0));
          if (offsets)
            os.push_back(paramOf(j, 1));
        }
      };
      if (!groupSums)
        loadScales();
      // With groupSums: products and activation sums of this group;
      // without: the accumulators themselves.
      // (Symmetric forms need no activation sums.)
      int64_t sums = groupSums && offsets ? tm : 0;
      SmallVector<Value> innerInits(accs.begin(), accs.end());
      if (groupSums)
        innerInits.assign(tm * tn + sums, zeros);
      auto inner = scf::ForOp::create(
          b, loc, cst(0), cst(group), cst(vw), innerInits,
          [&](OpBuilder &nb2, Location, Value v, ValueRange part) {
            OpBuilder::InsertionGuard guard2(b);
            b.setInsertionPointToStart(nb2.getInsertionBlock());
            Value k = arith::AddIOp::create(b, loc, base, v);
            SmallVector<Value> xs, ws, next;
            for (Value row : r)
              xs.push_back(vector::LoadOp::create(b, loc, vecType, a, ValueRange{row, k}));
            for (auto [j, col] : llvm::enumerate(q)) {
              Value w = weights(col, k);
              ws.push_back(groupSums ? w
                           : offsets ? vector::FMAOp::create(b, loc, ss[j], w, os[j]).getResult()
                                     : arith::MulFOp::create(b, loc, ss[j], w).getResult());
            }
            for (int64_t i = 0; i < tm; ++i)
              for (int64_t j = 0; j < tn; ++j)
                next.push_back(
                    vector::FMAOp::create(b, loc, xs[i], ws[j], part[i * tn + j]).getResult());
            for (int64_t i = 0; i < sums; ++i)
              next.push_back(
                  arith::AddFOp::create(b, loc, part[tm * tn + i], xs[i], fast).getResult());
            scf::YieldOp::create(b, loc, next);
          });
      if (!groupSums)
        return SmallVector<Value>(inner.getResults());
      loadScales();
      SmallVector<Value> next;
      for (int64_t i = 0; i < tm; ++i)
        for (int64_t j = 0; j < tn; ++j) {
          Value acc = vector::FMAOp::create(b, loc, ss[j], inner.getResult(i * tn + j),
                                            accs[i * tn + j]);
          next.push_back(
              offsets ? vector::FMAOp::create(b, loc, os[j], inner.getResult(tm * tn + i), acc)
                            .getResult()
                      : acc);
        }
      return next;
    };
    if (hoistScales)
      prefetchNextScales(q, tn);
    scf::ForOp loop = groupLoop(q, groups, 1, inits, vecType, groupStep);
    addRowSums(c, r, n0, sumLanesByRow(SmallVector<Value>(loop.getResults()), tm, tn));
  }

  /// moir.row_quant: x's rows as compressed-tensors quantizes them, in f32,
  /// in a new buffer [rows, depth] (the f32 kernels' fallback).
  Value quantizedRowValues(Value x, bool parallel) {
    Type f32 = b.getF32Type();
    auto type = MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32);
    Value out = memref::AllocOp::create(b, loc, type, ValueRange{rows, depth},
                                        b.getI64IntegerAttr(64));
    auto f32c = [&](float v) { return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)); };
    forEachItem(b, loc, ValueRange{rows}, parallel, [&](ValueRange ivs) {
      Value m = ivs[0];
      // One element at a time: the depth need not be whole vectors here.
      auto peak = scf::ForOp::create(b, loc, cst(0), depth, cst(1), ValueRange{f32c(0.0f)});
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(peak.getBody());
        Value v = memref::LoadOp::create(b, loc, x, ValueRange{m, peak.getInductionVar()});
        scf::YieldOp::create(b, loc,
                             arith::MaxNumFOp::create(b, loc, peak.getRegionIterArgs()[0],
                                                      math::AbsFOp::create(b, loc, v))
                                 .getResult());
      }
      Value scale = rowQuantScaleOf(b, loc, peak.getResult(0));
      forLoop(cst(0), depth, cst(1), [&](Value k) {
        Value v = memref::LoadOp::create(b, loc, x, ValueRange{m, k});
        Value q = rowQuantCodes(b, loc, v, scale);
        memref::StoreOp::create(b, loc, arith::MulFOp::create(b, loc, q, scale), out,
                                ValueRange{m, k});
      });
    });
    return out;
  }

  KernelShape shape;
  Value a, data, scales, c;
  bool rowScaled = false;
  bool nibbles = false, offsets = true, superblocks = false;
  int64_t group = 0, unit = 0;
  Value rows, cols, depth, groups;
  // The int8 path: its quantized activations, their blocks and 4-byte
  // words per row, this kernel's first row in them and that row's group.
  QuantizedRows quantized;
  Value units, words, firstRow, firstGroup;
  // The decode kernel's quantized rows, and the lanes of its dot products
  // (the vector width but in a tail step).
  RowCodes rowCodes;
  /// Whether the row kernel's step prefetches the next tile's scales too.
  bool stepScales = true;
  int64_t dotLanes = 0;
  // The first of this kernel's rows in rowCodes, and a fused op's
  // quantization with this kernel's first row in it.
  Value rowBase, hoistedFirst;
  std::optional<HoistedRowCodes> hoistedRows;
  // On AMX tiles (amxSweep): the work item's buffer for the tiles' i32
  // sums (4 slots of 16 x 16), and for nibbles the 16 weight rows' codes
  // unpacked to bytes; null on the vector kernels. The unit loop
  // takes blocks in pairs when tilePairs, tilePhase saying which of the
  // pair a step is.
  Value tileSums, unpacked;
  bool tilePairs = false;
  int64_t tilePhase = 0;
};

struct CPUContractionKernelsPass
    : moir::impl::CPUContractionKernelsPassBase<CPUContractionKernelsPass> {
  using Base::Base;

  /// Whether decode over `form` takes int8 activations (int8-decode):
  /// 4-bit codes are bound by their unpacking, 8-bit ones by memory.
  bool decodeInt8(const PackedForm &form) const {
    return int8Decode == "all" || (int8Decode == "nibbles" && form.storage == "u4");
  }

  void runOnOperation() override {
    if (int8Decode != "none" && int8Decode != "nibbles" && int8Decode != "all") {
      getOperation()->emitError("moir-cpu-contraction-kernels: int8-decode must be none, "
                                "nibbles or all, not '")
          << int8Decode << "'";
      return signalPassFailure();
    }
    if (int8DecodeBits != 8 && int8DecodeBits != 16) {
      getOperation()->emitError("moir-cpu-contraction-kernels: int8-decode-bits must be 8 or "
                                "16, not ")
          << static_cast<int64_t>(int8DecodeBits);
      return signalPassFailure();
    }
    if (vectorWidth <= 0 || tileM <= 0 || tileN <= 0 || blockN <= 0 || blockN % tileN != 0) {
      getOperation()->emitError("moir-cpu-contraction-kernels: sizes must be positive and "
                                "block-n a multiple of tile-n");
      return signalPassFailure();
    }
    if (bf16Dot && vectorWidth != 4 && vectorWidth != 8 && vectorWidth != 16) {
      getOperation()->emitError("moir-cpu-contraction-kernels: bf16-dot needs a vector "
                                "width of 4, 8 or 16 f32 lanes");
      return signalPassFailure();
    }
    if (int8Dot && vectorWidth != 4 && vectorWidth != 8 && vectorWidth != 16) {
      getOperation()->emitError("moir-cpu-contraction-kernels: int8-dot needs a vector "
                                "width of 4, 8 or 16 f32 lanes (AArch64 sdot, AVX-VNNI, "
                                "AVX512-VNNI)");
      return signalPassFailure();
    }
    if (amx && ((!bf16Dot && !int8Dot) || vectorWidth != 16)) {
      getOperation()->emitError("moir-cpu-contraction-kernels: amx needs bf16-dot or int8-dot "
                                "and a vector width of 16 f32 lanes (AVX-512)");
      return signalPassFailure();
    }
    KernelShape shape{vectorWidth, tileM, tileN, blockN, bf16Dot, amx, int8DecodeBits == 16,
                      prefetchBytes};
    SmallVector<std::pair<linalg::GenericOp, Form>> matched;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (!op->hasAttr(moir::attrs::parallelName()) && !op->hasAttr(moir::attrs::kernelName()))
        return;
      if (isPackedContraction(op, vectorWidth))
        matched.push_back({op, Form::Packed});
      else if (Form form = classify(op); form != Form::None)
        matched.push_back({op, form});
    });
    OpBuilder b(&getContext());
    // Activations quantized once before a parallel loop, per (buffer,
    // block size, loop).
    llvm::DenseMap<std::tuple<Value, int64_t, Operation *>, QuantizedRows> hoisted;
    std::map<std::tuple<void *, int64_t, Operation *>, HoistedRowCodes> hoistedRows;
    llvm::DenseMap<std::pair<Value, Operation *>, Value> pairedHoisted;
    for (auto [op, form] : matched) {
      b.setInsertionPoint(op);
      // Products marked moir.precise (the MoE router) keep f32 activations.
      bool precise = op->hasAttr(moir::attrs::preciseName());
      // moir.kernel: one work item of an enclosing parallel loop already.
      bool parallel = op->hasAttr(moir::attrs::parallelName());
      Value a = op.getDpsInputs()[0], w = op.getDpsInputs()[1], c = op.getDpsInits()[0];
      // moir.row_quant: W8A8 rows, quantized here as compressed-tensors
      // does (the int8 paths in decode too: exact codes).
      bool rowQuant = op->hasAttr(moir::attrs::rowQuantName());
      if (rowQuant && form != Form::Packed) {
        op.emitError("moir-cpu-contraction-kernels: moir.row_quant rows need a packed "
                     "quantized weight");
        return signalPassFailure();
      }
      if (form == Form::Packed && combinesRows(op)) {
        if (rowQuant) {
          op.emitError("moir-cpu-contraction-kernels: a row combination cannot take "
                       "moir.row_quant rows");
          return signalPassFailure();
        }
        PackedKernelBuilder(b, op.getLoc(), op, shape).buildOuter(parallel);
      } else if (form == Form::Packed) {
        PackedForm packed = packedForm(op);
        int64_t unit = int8Dot && (!precise || rowQuant)
                           ? int8Unit(packed.storage, packed.group, vectorWidth)
                           : 0;
        bool decodeCodes = decodeInt8(packed) || rowQuant;
        std::optional<std::pair<QuantizedRows, Value>> rowsOf;
        PackedKernelBuilder kernel(b, op.getLoc(), op, shape);
        if (unit && !parallel) {
          rowsOf = hoistQuantization(b, op, unit, rowQuant, hoisted);
          std::optional<RowQuantizer> decode =
              decodeCodes ? kernel.decodeQuantizer(unit) : std::nullopt;
          if (decode)
            if (auto rowsFor =
                    hoistRowQuantization(b, op, *decode, kernel.rowDepthUnit(), hoistedRows))
              kernel.useHoistedRows(rowsFor->first, rowsFor->second);
        }
        b.setInsertionPoint(op);
        kernel.build(parallel, unit, rowsOf, decodeCodes);
      } else if (form == Form::Plain) {
        KernelBuilder kernel(b, op.getLoc(), a, w, c, shape, precise);
        std::optional<std::pair<Value, Value>> paired;
        if (kernel.pairable() && !parallel)
          paired = hoistPairedRows(b, op, pairedHoisted);
        b.setInsertionPoint(op);
        kernel.build(parallel, paired);
      } else if (form == Form::Outer2D)
        OuterKernelBuilder(b, op.getLoc(), a, w, c, shape).build(parallel);
      else
        buildBatched(b, op, shape, precise, form, parallel);
      op.erase();
    }
    markTileUse();
  }

  /// Code that uses AMX tiles exports `moir_uses_amx` (an i32, 1): Linux
  /// grants a process the tiles' state only when asked (arch_prctl), so
  /// the runtime asks when it loads such code, and says so where the
  /// kernel refuses, instead of the first tile instruction faulting.
  void markTileUse() {
    bool used = false;
    getOperation()->walk([&](Operation *op) {
      if (!isa<amx::TileMulFOp, amx::TileMulIOp>(op))
        return WalkResult::advance();
      used = true;
      return WalkResult::interrupt();
    });
    auto module = dyn_cast<ModuleOp>(getOperation());
    if (!module)
      module = getOperation()->getParentOfType<ModuleOp>();
    if (!used || !module || module.lookupSymbol(kTileMarker))
      return;
    OpBuilder b(module.getBodyRegion());
    LLVM::GlobalOp::create(b, module.getLoc(), b.getI32Type(), /*isConstant=*/true,
                           LLVM::Linkage::External, kTileMarker, b.getI32IntegerAttr(1));
  }
  static constexpr llvm::StringLiteral kTileMarker = "moir_uses_amx";

  /// Whether nothing inside `loop` writes `v` or a view of it.
  static bool onlyReadIn(Value v, Operation *loop) {
    for (OpOperand &use : v.getUses()) {
      Operation *user = use.getOwner();
      if (!loop->isAncestor(user))
        continue;
      if (isa<memref::SubViewOp, memref::CastOp>(user)) {
        if (!onlyReadIn(user->getResult(0), loop))
          return false;
        continue;
      }
      if (auto dps = dyn_cast<DestinationStyleOpInterface>(user)) {
        if (!dps.isDpsInput(&use))
          return false;
        continue;
      }
      if (!isa<memref::LoadOp, vector::LoadOp, memref::DimOp>(user))
        return false;
    }
    return true;
  }

  /// The buffer a `moir.kernel` op's activations are a row slice of, when
  /// it is allocated outside the op's scf.forall and only read in it: the
  /// buffer, the slice's first row and the loop.
  struct SharedRows {
    Value buffer;
    OpFoldResult firstRow;
    scf::ForallOp loop;
  };
  static std::optional<SharedRows> sharedRows(OpBuilder &b, linalg::GenericOp op) {
    Value x = op.getDpsInputs()[0];
    OpFoldResult firstRow = b.getIndexAttr(0);
    bool sliced = false;
    while (true) {
      if (auto cast = x.getDefiningOp<memref::CastOp>()) {
        x = cast.getSource();
        continue;
      }
      auto view = x.getDefiningOp<memref::SubViewOp>();
      if (!view)
        break;
      MemRefType source = view.getSourceType();
      // One row slice of whole rows.
      if (sliced || source.getRank() != 2 || view.getType().getRank() != 2 ||
          !view.hasUnitStride() || !isConstantIntValue(view.getMixedOffsets()[1], 0) ||
          source.isDynamicDim(1) ||
          getConstantIntValue(view.getMixedSizes()[1]) != source.getDimSize(1))
        return std::nullopt;
      sliced = true;
      firstRow = view.getMixedOffsets()[0];
      x = view.getSource();
    }
    auto loop = op->getParentOfType<scf::ForallOp>();
    if (!x.getDefiningOp<memref::AllocOp>() || !unitInnerStride(x.getType()) || !loop ||
        loop->isAncestor(x.getDefiningOp()) || !onlyReadIn(x, loop))
      return std::nullopt;
    return SharedRows{x, firstRow, loop};
  }

  /// Whether a quantization made before `loop` may run its rows in
  /// parallel (the runtime's pool does not nest).
  static bool parallelBefore(scf::ForallOp loop) {
    return !loop->getParentOfType<scf::ForallOp>() && !loop->getParentOfType<scf::ParallelOp>();
  }

  /// A work item's kernel (one item of an enclosing parallel loop, as the
  /// fused experts' are) reads a row slice of activations that every item
  /// of an expert shares: quantizing them per item would repeat the work
  /// once per block of weight rows. When the slice is of a buffer
  /// allocated outside the loop that nothing in the loop writes, the whole
  /// buffer is quantized once before the loop (and freed after it); the
  /// result is those rows and the slice's first row, or none (the kernel
  /// quantizes its own rows).
  std::optional<std::pair<QuantizedRows, Value>>
  hoistQuantization(OpBuilder &b, linalg::GenericOp op, int64_t unit, bool rowScaled,
                    llvm::DenseMap<std::tuple<Value, int64_t, Operation *>, QuantizedRows> &cache) {
    return hoistShared(
        b, op, cache,
        [&](Value x, Operation *loop) {
          return std::make_tuple(x, unit * 2 + rowScaled, loop);
        },
        [&](Value x, scf::ForallOp loop) {
          // Only a buffer of kInt8MinRows rows or more has a slice that
          // takes these codes: fewer (a decode step's tokens times their
          // experts) would be quantized for nothing (12 us a layer of the
          // DeepSeek-shaped Q8_0 decode, 6 rows padded to 16).
          QuantizedRows q =
              ActivationQuantizer(b, loop.getLoc(), vectorWidth, unit, rowScaled)
                  .build(x, parallelBefore(loop), PackedKernelBuilder::kInt8MinRows);
          freeAfter(b, loop, {q.codes, q.stats, q.corrections});
          return q;
        });
  }

  /// What the hoists share: for `op`'s row slice of a buffer that its loop
  /// shares (sharedRows) and `accepts` takes, the value `make` builds from
  /// that buffer before the loop (once per key of `cache`, which `keyOf`
  /// forms from the buffer and the loop), and the slice's first row.
  template <typename Map, typename KeyFn, typename MakeFn>
  std::optional<std::pair<typename Map::mapped_type, Value>>
  hoistShared(OpBuilder &b, linalg::GenericOp op, Map &cache, KeyFn keyOf, MakeFn make,
              llvm::function_ref<bool(Value)> accepts = nullptr) {
    std::optional<SharedRows> shared = sharedRows(b, op);
    if (!shared || (accepts && !accepts(shared->buffer)))
      return std::nullopt;
    auto key = keyOf(shared->buffer, shared->loop.getOperation());
    auto found = cache.find(key);
    if (found == cache.end()) {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(shared->loop);
      found = cache.try_emplace(key, make(shared->buffer, shared->loop)).first;
    }
    b.setInsertionPoint(op);
    return std::make_pair(found->second,
                          getValueOrCreateConstantIndexOp(b, op.getLoc(), shared->firstRow));
  }

  /// Frees `buffers` after `loop`.
  static void freeAfter(OpBuilder &b, scf::ForallOp loop, ArrayRef<Value> buffers) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointAfter(loop);
    for (Value v : buffers)
      memref::DeallocOp::create(b, loop.getLoc(), v);
  }

  /// The same for the bf16 broadcast kernel: the buffer a work item's
  /// activations are a row slice of, rounded and paired once before the
  /// loop (PairedRows; freed after it). The result is that buffer and the
  /// slice's first row, or none (the kernel pairs its own rows).
  std::optional<std::pair<Value, Value>>
  hoistPairedRows(OpBuilder &b, linalg::GenericOp op,
                  llvm::DenseMap<std::pair<Value, Operation *>, Value> &cache) {
    return hoistShared(
        b, op, cache, [](Value x, Operation *loop) { return std::make_pair(x, loop); },
        [&](Value x, scf::ForallOp loop) {
          Value paired = PairedRows(b, loop.getLoc(), vectorWidth).build(x, parallelBefore(loop));
          freeAfter(b, loop, {paired});
          return paired;
        },
        pairableDepth);
  }

  /// Buffers of at most this many rows get the decode kernel's row
  /// quantization before a fused op's loop (decode: the tokens times the
  /// experts each routes to).
  static constexpr int64_t kRowHoistMaxRows = 64;

  /// The same for the decode kernel's row layout: a buffer of at most
  /// kRowHoistMaxRows rows is quantized once before the loop (rows in
  /// parallel unless the loop is itself in a parallel one), others not
  /// (its kernels quantize their own rows, as they do for a slice of fewer
  /// than 8 rows of a prefill). Nothing is hoisted for a depth the row
  /// kernel does not take (not a multiple of `depthUnit`).
  std::optional<std::pair<HoistedRowCodes, Value>>
  hoistRowQuantization(OpBuilder &b, linalg::GenericOp op, RowQuantizer quantizer,
                       int64_t depthUnit,
                       std::map<std::tuple<void *, int64_t, Operation *>, HoistedRowCodes> &cache) {
    return hoistShared(
        b, op, cache,
        [&](Value x, Operation *loop) {
          return std::make_tuple(x.getAsOpaquePointer(), quantizer.layoutKey(), loop);
        },
        [&](Value x, scf::ForallOp loop) {
          Location loc = loop.getLoc();
          Value rows = memref::DimOp::create(b, loc, x, 0);
          HoistedRowCodes h;
          h.quantized = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ule, rows,
              arith::ConstantIndexOp::create(b, loc, kRowHoistMaxRows));
          RowCodes layout = quantizer.empty();
          SmallVector<Value> emptyValues = layout.values();
          SmallVector<Type> types;
          for (Value v : emptyValues)
            types.push_back(v.getType());
          // (The empty buffers are made before the branch and freed after
          // the loop with the rest.)
          auto ifOp = scf::IfOp::create(b, loc, types, h.quantized, /*withElseRegion=*/true);
          {
            OpBuilder::InsertionGuard inner(b);
            b.setInsertionPointToStart(ifOp.thenBlock());
            scf::YieldOp::create(b, loc, quantizer.build(x, parallelBefore(loop)).values());
            b.setInsertionPointToStart(ifOp.elseBlock());
            scf::YieldOp::create(b, loc, emptyValues);
          }
          h.codes = layout.with(ifOp.getResults());
          OpBuilder::InsertionGuard after(b);
          b.setInsertionPointAfter(loop);
          // Freed whichever branch made them.
          for (Value v : ifOp.getResults())
            memref::DeallocOp::create(b, loc, v);
          auto freeEmpty = scf::IfOp::create(b, loc, h.quantized, /*withElseRegion=*/false);
          b.setInsertionPointToStart(freeEmpty.thenBlock());
          for (Value v : emptyValues)
            memref::DeallocOp::create(b, loc, v);
          return h;
        },
        [&](Value x) { return cast<MemRefType>(x.getType()).getDimSize(1) % depthUnit == 0; });
  }

  /// One kernel per batch index b over 2-D views of the operands.
  static void buildBatched(OpBuilder &b, linalg::GenericOp op, const KernelShape &shape,
                           bool precise, Form form, bool parallel) {
    Location loc = op.getLoc();
    SmallVector<Range> ranges = cast<linalg::LinalgOp>(op.getOperation()).createLoopRanges(b, loc);
    // Work items: the batch (heads); each runs its kernel sequentially, so a
    // decode step's attention is one fork per op, not one per head.
    Value count = getValueOrCreateConstantIndexOp(b, loc, ranges[1].size);
    forEachItem(b, loc, ValueRange{count}, parallel, [&](ValueRange ivs) {
      Value batch = ivs[0];
      auto view = [&](OpOperand &operand) {
        Value v = operand.get();
        AffineMap map = op.getMatchingIndexingMap(&operand);
        MLIRContext *ctx = b.getContext();
        AffineExpr zero = getAffineConstantExpr(0, ctx), d0 = getAffineDimExpr(0, ctx);
        SmallVector<OpFoldResult> offsets, sizes, strides;
        SmallVector<int64_t> shape2d;
        for (AffineExpr e : map.getResults()) {
          // Offset: the expression at m = n = k = 0.
          AffineExpr at = e.replaceDimsAndSymbols({zero, d0, zero, zero}, {});
          offsets.push_back(affine::makeComposedFoldedAffineApply(b, loc, AffineMap::get(1, 0, at),
                                                                  ArrayRef<OpFoldResult>{batch}));
          int kept = -1;
          for (int l : {0, 2, 3})
            if (e.isFunctionOfDim(l))
              kept = l;
          sizes.push_back(kept == -1 ? b.getIndexAttr(1) : ranges[kept].size);
          strides.push_back(b.getIndexAttr(1));
          if (kept != -1)
            shape2d.push_back(getConstantIntValue(sizes.back()).value_or(ShapedType::kDynamic));
        }
        // The full-rank view's layout, its unit (batch) dimensions dropped.
        auto source = cast<MemRefType>(v.getType());
        MemRefType full = memref::SubViewOp::inferResultType(source, offsets, sizes, strides);
        SmallVector<int64_t> fullStrides, keptStrides;
        int64_t offset;
        (void)full.getStridesAndOffset(fullStrides, offset);
        for (auto [i, e] : llvm::enumerate(map.getResults()))
          if (e.isFunctionOfDim(0) || e.isFunctionOfDim(2) || e.isFunctionOfDim(3))
            keptStrides.push_back(fullStrides[i]);
        auto type = MemRefType::get(shape2d, source.getElementType(),
                                    StridedLayoutAttr::get(ctx, offset, keptStrides));
        return memref::SubViewOp::create(b, loc, type, v, offsets, sizes, strides).getResult();
      };
      Value a = view(*op.getDpsInputOperand(0)), w = view(*op.getDpsInputOperand(1)),
            c = view(*op.getDpsInitOperand(0));
      if (form == Form::Outer)
        OuterKernelBuilder(b, loc, a, w, c, shape).build(/*parallel=*/false);
      else
        KernelBuilder(b, loc, a, w, c, shape, precise).build(/*parallel=*/false);
    });
  }
};

} // namespace
