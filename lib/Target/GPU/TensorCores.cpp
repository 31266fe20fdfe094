//===- TensorCores.cpp - matrix products on the GPU's matrix units ---------===//
//
// A contraction out[m, n] += a(m, k) * b(n, k) whose rows are many enough
// (prefill) becomes a gpu.launch of 64x64 output tiles: the block stages
// 64x32 slices of both operands in workgroup memory as bf16 (whatever each
// operand's stored form: f32 activations are rounded, quantized weights are
// dequantized by the cloned body, once per element and block), and each of
// its four warps multiplies a 32x32 quarter with the chip's matrix
// instruction: NVIDIA mma.sync m16n8k16 (nvgpu.mma.sync, sm_80 and newer) or
// AMD MFMA 16x16x16 (amdgpu.mfma, gfx90a/gfx942). Fewer rows (decode) keep
// the warp-per-output form of moir-gpu-warp-reductions, chosen at run time.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/GPU/GPUTarget.h"
#include "MoIR/IR/MoIRDialect.h"

#include "Contractions.h"
#include "HostLevel.h"

#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"

namespace moir {
#define GEN_PASS_DEF_GPUTENSORCORESPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

enum class Unit { MmaSync, Mfma };

// Block tile (rows x columns of the output, depth per stage) and its 2x2
// warps of 32x32 each.
constexpr int64_t kBlockM = 64, kBlockN = 64, kBlockK = 32, kWarps = 4, kWarpTile = 32;
// Staged rows are padded so that a fragment's rows fall in different banks.
constexpr int64_t kPad = 8;

/// The body computation of one operand side: the mulf operand and every
/// body op and block argument it is computed from.
struct Side {
  Value value;
  llvm::SetVector<Operation *> ops;
  llvm::SetVector<BlockArgument> args;
  llvm::SmallDenseSet<unsigned> dims; // loop dimensions it reads
  bool narrow = false;                // reads a stored form narrower than f32
};

struct Match {
  Side a, b;             // a: rows (m, k); b: columns (n, k)
  unsigned m, n, k;      // loop dimensions
};

bool collect(linalg::GenericOp op, Value v, Side &side) {
  Block *body = op.getBlock();
  if (auto arg = dyn_cast<BlockArgument>(v)) {
    if (arg.getOwner() != body)
      return true; // defined above the generic
    OpOperand *operand = op.getMatchingOpOperand(arg);
    if (op.isDpsInit(operand))
      return false; // the accumulator
    if (side.args.insert(arg)) {
      AffineMap map = op.getMatchingIndexingMap(operand);
      for (unsigned d = 0; d < map.getNumDims(); ++d)
        if (map.isFunctionOfDim(d))
          side.dims.insert(d);
      Type t = arg.getType();
      if (!t.isF32() && !t.isF64())
        side.narrow = true;
    }
    return true;
  }
  Operation *def = v.getDefiningOp();
  if (def->getBlock() != body)
    return true;
  if (auto index = dyn_cast<linalg::IndexOp>(def)) {
    side.dims.insert(index.getDim());
    side.ops.insert(def);
    return true;
  }
  if (def->getNumRegions() != 0 || !isMemoryEffectFree(def))
    return false;
  for (Value operand : def->getOperands())
    if (!collect(op, operand, side))
      return false;
  side.ops.insert(def);
  return true;
}

bool within(const Side &side, unsigned x, unsigned k) {
  return llvm::all_of(side.dims, [&](unsigned d) { return d == x || d == k; });
}

std::optional<Match> matchProduct(linalg::GenericOp op) {
  if (!op.hasPureBufferSemantics() || op.getNumDpsInits() != 1 || op.getNumLoops() != 3)
    return std::nullopt;
  // Marked to keep f32 arithmetic (the MoE router: its scores pick experts).
  if (op->hasAttr(moir::attrs::preciseName()))
    return std::nullopt;
  auto iterators = op.getIteratorTypesArray();
  if (iterators[0] != utils::IteratorType::parallel ||
      iterators[1] != utils::IteratorType::parallel ||
      iterators[2] != utils::IteratorType::reduction)
    return std::nullopt;
  OpOperand *init = op.getDpsInitOperand(0);
  auto outType = cast<MemRefType>(init->get().getType());
  AffineMap out = op.getMatchingIndexingMap(init);
  if (out.getNumResults() != 2 || !out.isProjectedPermutation() || out.isFunctionOfDim(2) ||
      !outType.getElementType().isF32())
    return std::nullopt;
  Block *body = op.getBlock();
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  auto add = yield.getValues()[0].getDefiningOp<arith::AddFOp>();
  if (!add || add->getBlock() != body)
    return std::nullopt;
  BlockArgument acc = op.getMatchingBlockArgument(init);
  Value element;
  if (add.getLhs() == acc)
    element = add.getRhs();
  else if (add.getRhs() == acc)
    element = add.getLhs();
  else
    return std::nullopt;
  if (!acc.hasOneUse())
    return std::nullopt;
  auto mul = element.getDefiningOp<arith::MulFOp>();
  if (!mul || mul->getBlock() != body || !mul->hasOneUse() || !mul.getType().isF32())
    return std::nullopt;
  Side lhs, rhs;
  lhs.value = mul.getLhs();
  rhs.value = mul.getRhs();
  if (!collect(op, lhs.value, lhs) || !collect(op, rhs.value, rhs))
    return std::nullopt;
  // The rows are the parallel dimension whose extent is dynamic (the tokens);
  // with none or both dynamic, the first.
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  if (ShapedType::isDynamic(ranges[2]))
    return std::nullopt; // the depth decides the staging's tail at compile time
  unsigned m = 0, n = 1;
  if (!ShapedType::isDynamic(ranges[0]) && ShapedType::isDynamic(ranges[1]))
    std::swap(m, n);
  Match match{{}, {}, m, n, 2};
  if (within(lhs, m, 2) && within(rhs, n, 2)) {
    match.a = std::move(lhs);
    match.b = std::move(rhs);
  } else if (within(rhs, m, 2) && within(lhs, n, 2)) {
    match.a = std::move(rhs);
    match.b = std::move(lhs);
  } else {
    return std::nullopt;
  }
  // A product of two f32 operands keeps f32 arithmetic (the router, f32
  // checkpoints): bf16 operands would change its numbers, not only round
  // what is already stored narrower.
  if (!match.a.narrow && !match.b.narrow)
    return std::nullopt;
  return match;
}

/// Emits the matrix unit's fragments, products and result layout.
struct UnitEmitter {
  Unit unit;
  int64_t warpSize;
  Type bf16, f32;

  int64_t fragsM() const { return kWarpTile / 16; }
  int64_t fragsN() const { return unit == Unit::MmaSync ? kWarpTile / 8 : kWarpTile / 16; }
  VectorType accType() const {
    return unit == Unit::MmaSync ? VectorType::get({2, 2}, f32) : VectorType::get({4}, f32);
  }

  /// One k16 step: every (i, j) accumulator of the warp takes the product
  /// of its fragments, read from the staged tiles at (row, depth) offsets.
  void step(OpBuilder &b, Location loc, Value lane, Value tileA, Value tileB, Value rowA,
            Value rowB, Value depth, SmallVectorImpl<Value> &accs) const {
    auto idx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v).getResult(); };
    auto add = [&](Value x, int64_t v) {
      return v == 0 ? x : arith::AddIOp::create(b, loc, x, idx(v)).getResult();
    };
    auto ld = [&](Value tile, Value r, Value c) {
      return memref::LoadOp::create(b, loc, tile, ValueRange{r, c}).getResult();
    };
    SmallVector<Value> fragA, fragB;
    if (unit == Unit::MmaSync) {
      // PTX ISA, mma.m16n8k16 .bf16 fragments: group g = lane / 4 and
      // t = lane % 4; A's registers hold (g, 2t..2t+1), (g+8, 2t..), (g,
      // 2t+8..), (g+8, 2t+8..); B's (k = 2t..2t+1, n = g), (k = 2t+8.., g).
      Value g = arith::DivUIOp::create(b, loc, lane, idx(4));
      Value t2 = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, lane, idx(4)), idx(2));
      Value col = arith::AddIOp::create(b, loc, depth, t2);
      for (int64_t i = 0; i < fragsM(); ++i) {
        Value r = arith::AddIOp::create(b, loc, add(rowA, i * 16), g);
        SmallVector<Value> e;
        for (auto [dr, dc] : {std::pair{0, 0}, {8, 0}, {0, 8}, {8, 8}})
          for (int64_t h = 0; h < 2; ++h)
            e.push_back(ld(tileA, add(r, dr), add(col, dc + h)));
        fragA.push_back(vector::FromElementsOp::create(b, loc, VectorType::get({4, 2}, bf16), e));
      }
      for (int64_t j = 0; j < fragsN(); ++j) {
        Value n = arith::AddIOp::create(b, loc, add(rowB, j * 8), g);
        SmallVector<Value> e;
        for (int64_t dc : {0, 8})
          for (int64_t h = 0; h < 2; ++h)
            e.push_back(ld(tileB, n, add(col, dc + h)));
        fragB.push_back(vector::FromElementsOp::create(b, loc, VectorType::get({2, 2}, bf16), e));
      }
      for (int64_t i = 0; i < fragsM(); ++i)
        for (int64_t j = 0; j < fragsN(); ++j) {
          Value &acc = accs[i * fragsN() + j];
          acc = nvgpu::MmaSyncOp::create(b, loc, fragA[i], fragB[j], acc,
                                         ArrayRef<int64_t>{16, 8, 16});
        }
      return;
    }
    // CDNA v_mfma_f32_16x16x16_bf16: lane l holds A(l % 16, 4(l / 16) + 0..3)
    // and B(k = 4(l / 16) + 0..3, n = l % 16).
    Value r16 = arith::RemUIOp::create(b, loc, lane, idx(16));
    Value q4 = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, lane, idx(16)), idx(4));
    Value col = arith::AddIOp::create(b, loc, depth, q4);
    auto frag = [&](Value tile, Value row) {
      SmallVector<Value> e;
      for (int64_t h = 0; h < 4; ++h)
        e.push_back(ld(tile, row, add(col, h)));
      return vector::FromElementsOp::create(b, loc, VectorType::get({4}, bf16), e).getResult();
    };
    for (int64_t i = 0; i < fragsM(); ++i)
      fragA.push_back(frag(tileA, arith::AddIOp::create(b, loc, add(rowA, i * 16), r16)));
    for (int64_t j = 0; j < fragsN(); ++j)
      fragB.push_back(frag(tileB, arith::AddIOp::create(b, loc, add(rowB, j * 16), r16)));
    for (int64_t i = 0; i < fragsM(); ++i)
      for (int64_t j = 0; j < fragsN(); ++j) {
        Value &acc = accs[i * fragsN() + j];
        acc = amdgpu::MFMAOp::create(b, loc, accType(), 16, 16, 16, 1, fragA[i], fragB[j], acc);
      }
  }

  /// Calls `store(row, column, value)` for every element of the warp's
  /// accumulators, at offsets within the warp's 32x32 tile.
  void results(OpBuilder &b, Location loc, Value lane, ArrayRef<Value> accs,
               llvm::function_ref<void(Value, Value, Value)> store) const {
    auto idx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v).getResult(); };
    if (unit == Unit::MmaSync) {
      // D(g + 8h, 2t + e) in register [h][e].
      Value g = arith::DivUIOp::create(b, loc, lane, idx(4));
      Value t2 = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, lane, idx(4)), idx(2));
      for (int64_t i = 0; i < fragsM(); ++i)
        for (int64_t j = 0; j < fragsN(); ++j)
          for (int64_t h = 0; h < 2; ++h)
            for (int64_t e = 0; e < 2; ++e) {
              Value row = arith::AddIOp::create(b, loc, g, idx(i * 16 + h * 8));
              Value col = arith::AddIOp::create(b, loc, t2, idx(j * 8 + e));
              Value v = vector::ExtractOp::create(b, loc, accs[i * fragsN() + j],
                                                  ArrayRef<int64_t>{h, e});
              store(row, col, v);
            }
      return;
    }
    // D(4(l / 16) + e, l % 16) in register e.
    Value r16 = arith::RemUIOp::create(b, loc, lane, idx(16));
    Value q4 = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, lane, idx(16)), idx(4));
    for (int64_t i = 0; i < fragsM(); ++i)
      for (int64_t j = 0; j < fragsN(); ++j)
        for (int64_t e = 0; e < 4; ++e) {
          Value row = arith::AddIOp::create(b, loc, q4, idx(i * 16 + e));
          Value col = arith::AddIOp::create(b, loc, r16, idx(j * 16));
          Value v = vector::ExtractOp::create(b, loc, accs[i * fragsN() + j], ArrayRef<int64_t>{e});
          store(row, col, v);
        }
  }
};

/// The value of `side` at loop indices `ivs`, cloned from the generic's body.
Value evaluate(OpBuilder &b, Location loc, linalg::GenericOp op, const Side &side,
               ArrayRef<Value> ivs) {
  IRMapping map;
  for (BlockArgument arg : side.args) {
    OpOperand *operand = op.getMatchingOpOperand(arg);
    SmallVector<Value> at =
        moir::gpu::applyIndexing(b, loc, op.getMatchingIndexingMap(operand), ivs);
    map.map(arg, memref::LoadOp::create(b, loc, operand->get(), at));
  }
  // Body order keeps operands before their users.
  for (Operation &inner : op.getBlock()->without_terminator()) {
    if (!side.ops.contains(&inner))
      continue;
    if (auto index = dyn_cast<linalg::IndexOp>(inner)) {
      map.map(index.getResult(), ivs[index.getDim()]);
      continue;
    }
    b.clone(inner, map);
  }
  return map.lookupOrDefault(side.value);
}

/// Rows [0, rows) of `op`'s operands along loop dimension `m`: subviews of
/// every operand whose map reads `m` as one plain result. Fails when one
/// reads it otherwise.
FailureOr<SmallVector<Value>> rowSlices(OpBuilder &b, Location loc, linalg::GenericOp op,
                                        unsigned m, Value rows) {
  SmallVector<Value> operands;
  for (OpOperand &operand : op->getOpOperands()) {
    AffineMap map = op.getMatchingIndexingMap(&operand);
    Value value = operand.get();
    if (!map.isFunctionOfDim(m)) {
      operands.push_back(value);
      continue;
    }
    std::optional<unsigned> position;
    for (unsigned r = 0; r < map.getNumResults(); ++r) {
      if (map.getResult(r) == getAffineDimExpr(m, b.getContext()))
        position = r;
      else if (map.getResult(r).isFunctionOfDim(m))
        return failure();
    }
    if (!position)
      return failure();
    auto type = cast<MemRefType>(value.getType());
    SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0)), sizes, strides(
        type.getRank(), b.getIndexAttr(1));
    for (int64_t d = 0; d < type.getRank(); ++d)
      sizes.push_back(d == *position ? OpFoldResult(rows)
                                     : memref::getMixedSize(b, loc, value, d));
    operands.push_back(memref::SubViewOp::create(b, loc, value, offsets, sizes, strides));
  }
  return operands;
}

LogicalResult rewrite(linalg::GenericOp op, const Match &match, Unit unit, int64_t warpSize,
                      int64_t minRows) {
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  if (!ShapedType::isDynamic(ranges[match.m]) && ranges[match.m] < minRows)
    return success(); // too few rows: the warp-per-output form
  OpBuilder b(op);
  Location loc = op.getLoc();
  MLIRContext *ctx = op.getContext();
  linalg::FillOp fill = moir::gpu::foldableFill(op);
  SmallVector<Value> bounds;
  for (Range r : cast<linalg::LinalgOp>(op.getOperation()).createLoopRanges(b, loc))
    bounds.push_back(getValueOrCreateConstantIndexOp(b, loc, r.size));
  Value M = bounds[match.m], N = bounds[match.n];
  int64_t K = ranges[match.k];
  auto idx = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v).getResult(); };
  Value c0 = idx(0), c1 = idx(1);

  // Rows for the matrix units: all of them when there are at least
  // `minRows`, none otherwise; the rest go to the warp form, on row slices.
  Value rows = M;
  if (ShapedType::isDynamic(ranges[match.m]) && minRows > 1) {
    Value many = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, M, idx(minRows));
    rows = arith::SelectOp::create(b, loc, many, M, c0);
    Value few = arith::SubIOp::create(b, loc, M, rows);
    FailureOr<SmallVector<Value>> operands = rowSlices(b, loc, op, match.m, few);
    if (failed(operands))
      return success(); // leave it to the warp form
    if (fill)
      linalg::FillOp::create(b, loc, fill.getDpsInputOperand(0)->get(), operands->back());
    Operation *warpForm = b.clone(*op);
    warpForm->setOperands(*operands);
  }

  auto ceilDiv = [&](Value x, int64_t d) {
    return arith::DivUIOp::create(b, loc, arith::AddIOp::create(b, loc, x, idx(d - 1)), idx(d))
        .getResult();
  };
  Value gridX = ceilDiv(N, kBlockN), gridY = ceilDiv(rows, kBlockM);
  Value threads = idx(kWarps * warpSize);
  Attribute workgroup = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  Type bf16 = b.getBF16Type(), f32 = b.getF32Type();
  auto tileType = [&](int64_t rowsInTile) {
    return MemRefType::get({rowsInTile, kBlockK + kPad}, bf16, MemRefLayoutAttrInterface{},
                           workgroup);
  };
  auto launch = gpu::LaunchOp::create(b, loc, gridX, gridY, c1, threads, c1, c1,
                                      /*dynamicSharedMemorySize=*/nullptr, /*asyncTokenType=*/nullptr,
                                      ValueRange{}, TypeRange{tileType(kBlockM), tileType(kBlockN)});
  Block &body = launch.getBody().front();
  b.setInsertionPointToStart(&body);
  c0 = idx(0);
  c1 = idx(1);
  Value tileA = launch.getWorkgroupAttributions()[0], tileB = launch.getWorkgroupAttributions()[1];
  Value tid = launch.getThreadIds().x;
  Value rowBase = arith::MulIOp::create(b, loc, launch.getBlockIds().y, idx(kBlockM));
  Value colBase = arith::MulIOp::create(b, loc, launch.getBlockIds().x, idx(kBlockN));
  Value warp = arith::DivUIOp::create(b, loc, tid, idx(warpSize));
  Value lane = arith::RemUIOp::create(b, loc, tid, idx(warpSize));
  Value warpRow = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, warp, idx(2)),
                                        idx(kWarpTile));
  Value warpCol = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, warp, idx(2)),
                                        idx(kWarpTile));
  Value lastRow = arith::SubIOp::create(b, loc, M, c1);
  Value lastCol = arith::SubIOp::create(b, loc, N, c1);

  UnitEmitter emit{unit, warpSize, bf16, f32};
  Value zero = arith::ConstantOp::create(b, loc, emit.accType(),
                                         DenseElementsAttr::get(emit.accType(), 0.0f));
  int64_t depth = (K + kBlockK - 1) / kBlockK * kBlockK;
  // One depth slice of one side, as this thread stages it: consecutive
  // threads take consecutive depths (coalesced reads of row-major operands),
  // each `perThread` elements, all loaded before any is stored so that their
  // reads are in flight together.
  auto place = [&](int64_t i, Value &r, Value &c) {
    Value flat = arith::AddIOp::create(b, loc, tid, idx(i * kWarps * warpSize));
    r = arith::DivUIOp::create(b, loc, flat, idx(kBlockK));
    c = arith::RemUIOp::create(b, loc, flat, idx(kBlockK));
  };
  auto perThread = [&](int64_t tileRows) { return tileRows * kBlockK / (kWarps * warpSize); };
  auto load = [&](const Side &side, int64_t tileRows, Value base, Value last, unsigned dim,
                  Value k0, SmallVector<Value> &values) {
    for (int64_t i = 0; i < perThread(tileRows); ++i) {
      Value r, c;
      place(i, r, c);
      // Rows past the end read the last row: their results are never stored.
      Value at = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, base, r), last);
      Value kk = arith::AddIOp::create(b, loc, k0, c);
      Value inRange;
      if (K % kBlockK != 0) {
        inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, kk, idx(K));
        kk = arith::MinUIOp::create(b, loc, kk, idx(K - 1));
      }
      SmallVector<Value> ivs(3, c0);
      ivs[dim] = at;
      ivs[match.k] = kk;
      Value v = evaluate(b, loc, op, side, ivs);
      if (v.getType() != f32)
        v = arith::ExtFOp::create(b, loc, f32, v);
      // The depth past the end contributes zeros.
      if (inRange)
        v = arith::SelectOp::create(b, loc, inRange, v,
                                    arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f)));
      values.push_back(arith::TruncFOp::create(b, loc, bf16, v));
    }
  };
  auto loadBoth = [&](Value k0) {
    SmallVector<Value> values;
    load(match.a, kBlockM, rowBase, lastRow, match.m, k0, values);
    load(match.b, kBlockN, colBase, lastCol, match.n, k0, values);
    return values;
  };
  auto store = [&](ArrayRef<Value> values) {
    for (int64_t i = 0; i < int64_t(values.size()); ++i) {
      bool sideA = i < perThread(kBlockM);
      Value r, c;
      place(sideA ? i : i - perThread(kBlockM), r, c);
      memref::StoreOp::create(b, loc, values[i], sideA ? tileA : tileB, ValueRange{r, c});
    }
  };
  // Software-pipelined: the slice for the next step is read from global
  // memory into registers while the matrix units work on this one.
  SmallVector<Value> inits(emit.fragsM() * emit.fragsN(), zero);
  size_t numAccs = inits.size();
  SmallVector<Value> first = loadBoth(c0);
  inits.append(first.begin(), first.end());
  auto stages = scf::ForOp::create(b, loc, c0, idx(depth), idx(kBlockK), inits);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(stages.getBody());
    Value k0 = stages.getInductionVar();
    auto iterArgs = stages.getRegionIterArgs();
    store(SmallVector<Value>(iterArgs.begin() + numAccs, iterArgs.end()));
    gpu::BarrierOp::create(b, loc);
    // The last step reads its own slice again (in bounds) rather than past
    // the end.
    Value nextK = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, k0, idx(kBlockK)),
                                         idx(depth - kBlockK));
    SmallVector<Value> next = loadBoth(nextK);
    SmallVector<Value> accs(iterArgs.begin(), iterArgs.begin() + numAccs);
    for (int64_t s = 0; s < kBlockK; s += 16)
      emit.step(b, loc, lane, tileA, tileB, warpRow, warpCol, idx(s), accs);
    // Nobody restages before every warp has read this slice.
    gpu::BarrierOp::create(b, loc);
    accs.append(next.begin(), next.end());
    scf::YieldOp::create(b, loc, accs);
  }
  // Each thread writes its accumulators' elements that fall inside the
  // output, added to the fill's constant or the output's value.
  OpOperand *init = op.getDpsInitOperand(0);
  AffineMap outMap = op.getMatchingIndexingMap(init);
  Value rowOrigin = arith::AddIOp::create(b, loc, rowBase, warpRow);
  Value colOrigin = arith::AddIOp::create(b, loc, colBase, warpCol);
  emit.results(b, loc, lane,
               SmallVector<Value>(stages.getResults().begin(), stages.getResults().begin() + numAccs),
               [&](Value row, Value col, Value v) {
                 Value r = arith::AddIOp::create(b, loc, rowOrigin, row);
                 Value c = arith::AddIOp::create(b, loc, colOrigin, col);
                 Value inside = arith::AndIOp::create(
                     b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, r, rows),
                     arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, c, N));
                 auto guard = scf::IfOp::create(b, loc, inside, /*withElseRegion=*/false);
                 OpBuilder::InsertionGuard g(b);
                 b.setInsertionPointToStart(&guard.getThenRegion().front());
                 SmallVector<Value> ivs(3, c0);
                 ivs[match.m] = r;
                 ivs[match.n] = c;
                 SmallVector<Value> at = moir::gpu::applyIndexing(b, loc, outMap, ivs);
                 Value old = fill ? fill.getDpsInputOperand(0)->get()
                                  : memref::LoadOp::create(b, loc, init->get(), at).getResult();
                 memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, v),
                                         init->get(), at);
               });
  gpu::TerminatorOp::create(b, loc);
  op.erase();
  if (fill)
    fill.erase();
  return success();
}

struct GPUTensorCoresPass : moir::impl::GPUTensorCoresPassBase<GPUTensorCoresPass> {
  using GPUTensorCoresPassBase::GPUTensorCoresPassBase;

  void runOnOperation() override {
    Unit unit;
    if (this->unit == "mma-sync") {
      unit = Unit::MmaSync;
    } else if (this->unit == "mfma") {
      unit = Unit::Mfma;
    } else {
      getOperation().emitError("moir-gpu-tensor-cores: unknown unit '")
          << this->unit << "' (mma-sync or mfma)";
      return signalPassFailure();
    }
    if ((unit == Unit::MmaSync && warpSize != 32) || (unit == Unit::Mfma && warpSize != 64)) {
      getOperation().emitError("moir-gpu-tensor-cores: ")
          << this->unit << " needs a warp of " << (unit == Unit::MmaSync ? 32 : 64) << " lanes";
      return signalPassFailure();
    }
    if (minRows < 1) {
      getOperation().emitError("moir-gpu-tensor-cores: min-rows must be at least 1");
      return signalPassFailure();
    }
    std::vector<std::pair<linalg::GenericOp, Match>> todo;
    getOperation().walk([&](linalg::GenericOp op) {
      if (!moir::gpu::staysOnHost(op))
        return;
      if (std::optional<Match> m = matchProduct(op))
        todo.push_back({op, std::move(*m)});
    });
    for (auto &[op, match] : todo)
      if (failed(rewrite(op, match, unit, warpSize, minRows)))
        return signalPassFailure();
  }
};

} // namespace
