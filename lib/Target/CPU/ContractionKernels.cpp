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

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/IR/AffineMap.h"

namespace moir {
#define GEN_PASS_DEF_CPUCONTRACTIONKERNELSPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// The value `v` with an optional arith.extf looked through.
Value stripExt(Value v) {
  if (auto ext = v.getDefiningOp<arith::ExtFOp>())
    return ext.getIn();
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

/// Whether `op` is C[m, n] += A[m, k] * W[n, k] on buffers with f32
/// activations and result and f32/bf16/f16 weights.
bool isRowByRowContraction(linalg::GenericOp op) {
  if (!op.hasPureBufferSemantics() || op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1)
    return false;
  auto iterators = op.getIteratorTypesArray();
  if (iterators.size() != 3 || iterators[0] != utils::IteratorType::parallel ||
      iterators[1] != utils::IteratorType::parallel ||
      iterators[2] != utils::IteratorType::reduction)
    return false;
  MLIRContext *ctx = op.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  auto maps = op.getIndexingMapsArray();
  if (maps[0] != AffineMap::get(3, 0, {m, k}, ctx) ||
      maps[1] != AffineMap::get(3, 0, {n, k}, ctx) ||
      maps[2] != AffineMap::get(3, 0, {m, n}, ctx))
    return false;
  Value a = op.getDpsInputs()[0], w = op.getDpsInputs()[1], c = op.getDpsInits()[0];
  if (!unitInnerStride(a.getType()) || !unitInnerStride(w.getType()) ||
      cast<MemRefType>(c.getType()).getRank() != 2)
    return false;
  Type wElem = getElementTypeOrSelf(w.getType());
  if (!getElementTypeOrSelf(a.getType()).isF32() || !getElementTypeOrSelf(c.getType()).isF32() ||
      !(wElem.isF32() || wElem.isBF16() || wElem.isF16()))
    return false;

  // The body: yield(addf(mulf(ext?(a), ext?(w)), acc)), in either operand order.
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
           isa<arith::ExtFOp>(inner);
  });
}

struct KernelShape {
  int64_t vectorWidth, tileM, tileN, blockN;
  bool bf16Dot;
};

class KernelBuilder {
public:
  KernelBuilder(OpBuilder &b, Location loc, linalg::GenericOp op, const KernelShape &shape)
      : b(b), loc(loc), shape(shape), a(op.getDpsInputs()[0]), w(op.getDpsInputs()[1]),
        c(op.getDpsInits()[0]) {
    wElem = getElementTypeOrSelf(w.getType());
    // Products marked moir.precise (the MoE router) keep f32 activations.
    dot = shape.bf16Dot && wElem.isBF16() && !op->hasAttr("moir.precise");
    kStep = dot ? 2 * shape.vectorWidth : shape.vectorWidth;
  }

  void build() {
    Value zero = cst(0), one = cst(1);
    rows = memref::DimOp::create(b, loc, a, 0);
    cols = memref::DimOp::create(b, loc, w, 0);
    depth = memref::DimOp::create(b, loc, a, 1);
    // The part of k the vector loop covers.
    kVec = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, depth, cst(kStep)),
                                 cst(kStep));

    // bf16 dot products need the activations in bf16: one rounded copy.
    Value scratch;
    lhs = a;
    if (dot) {
      auto type = MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, b.getBF16Type());
      scratch = memref::AllocOp::create(b, loc, type, ValueRange{rows, depth},
                                        b.getI64IntegerAttr(64));
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
    Value blocks = arith::CeilDivUIOp::create(b, loc, cols, cst(shape.blockN));
    scf::ParallelOp::create(
        b, loc, ValueRange{zero}, ValueRange{blocks}, ValueRange{one},
        [&](OpBuilder &nested, Location, ValueRange ivs) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(nested.getInsertionBlock());
          Value lo = arith::MulIOp::create(b, loc, ivs[0], cst(shape.blockN));
          Value hi = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, lo, cst(shape.blockN)), cols);
          Value span = arith::SubIOp::create(b, loc, hi, lo);
          Value full = arith::AddIOp::create(
              b, loc, lo,
              arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, span, cst(shape.tileN)),
                                    cst(shape.tileN)));
          Value mFull = arith::MulIOp::create(
              b, loc, arith::DivUIOp::create(b, loc, rows, cst(shape.tileM)), cst(shape.tileM));
          auto sweep = [&](int64_t tm, Value m0) {
            forLoop(lo, full, cst(shape.tileN), [&](Value n0) { tile(tm, shape.tileN, m0, n0); });
            forLoop(full, hi, one, [&](Value n0) { tile(tm, 1, m0, n0); });
          };
          forLoop(zero, mFull, cst(shape.tileM), [&](Value m0) { sweep(shape.tileM, m0); });
          forLoop(mFull, rows, one, [&](Value m0) { sweep(1, m0); });
        });
    if (scratch)
      memref::DeallocOp::create(b, loc, scratch);
  }

private:
  Value cst(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }

  void forLoop(Value lo, Value hi, Value step, llvm::function_ref<void(Value)> body) {
    auto loop = scf::ForOp::create(b, loc, lo, hi, step);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    body(loop.getInductionVar());
  }

  Value toF32(Value v) {
    Type elem = getElementTypeOrSelf(v.getType());
    if (elem.isF32())
      return v;
    Type f32 = b.getF32Type();
    if (auto vec = dyn_cast<VectorType>(v.getType()))
      f32 = VectorType::get(vec.getShape(), f32);
    return arith::ExtFOp::create(b, loc, f32, v);
  }

  /// Outputs C[m0 .. m0+tm, n0 .. n0+tn].
  void tile(int64_t tm, int64_t tn, Value m0, Value n0) {
    auto fast = arith::FastMathFlags::reassoc | arith::FastMathFlags::contract;
    SmallVector<Value> r, q;
    for (int64_t i = 0; i < tm; ++i)
      r.push_back(i ? arith::AddIOp::create(b, loc, m0, cst(i)).getResult() : m0);
    for (int64_t j = 0; j < tn; ++j)
      q.push_back(j ? arith::AddIOp::create(b, loc, n0, cst(j)).getResult() : n0);

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
          for (Value row : r)
            xs.push_back(vector::LoadOp::create(b, loc, lhsType, lhs, ValueRange{row, k}));
          for (Value col : q) {
            Value y = vector::LoadOp::create(b, loc, wType, w, ValueRange{col, k});
            ys.push_back(dot ? y : toF32(y));
          }
          for (int64_t i = 0; i < tm; ++i)
            for (int64_t j = 0; j < tn; ++j) {
              Value acc = accs[i * tn + j];
              next.push_back(dot ? x86vector::DotBF16Op::create(b, loc, accType, acc, xs[i], ys[j])
                                       .getResult()
                                 : vector::FMAOp::create(b, loc, xs[i], ys[j], acc).getResult());
            }
          scf::YieldOp::create(b, loc, next);
        });

    SmallVector<Value> sums;
    for (Value acc : vecLoop.getResults())
      sums.push_back(vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, acc, fast));
    // The k remainder, one product at a time.
    auto tail = scf::ForOp::create(
        b, loc, kVec, depth, cst(1), sums,
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
    for (int64_t i = 0; i < tm; ++i)
      for (int64_t j = 0; j < tn; ++j) {
        Value old = memref::LoadOp::create(b, loc, c, ValueRange{r[i], q[j]});
        Value sum = arith::AddFOp::create(b, loc, old, tail.getResult(i * tn + j));
        memref::StoreOp::create(b, loc, sum, c, ValueRange{r[i], q[j]});
      }
  }

  Value scalarFMA(Value x, Value y, Value acc) {
    auto fast = arith::FastMathFlags::contract;
    Value p = arith::MulFOp::create(b, loc, x, y, fast);
    return arith::AddFOp::create(b, loc, p, acc, fast);
  }

  OpBuilder &b;
  Location loc;
  KernelShape shape;
  Value a, w, c, lhs;
  Type wElem;
  bool dot;
  int64_t kStep;
  Value rows, cols, depth, kVec;
};

struct CPUContractionKernelsPass
    : moir::impl::CPUContractionKernelsPassBase<CPUContractionKernelsPass> {
  using Base::Base;

  void runOnOperation() override {
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
    KernelShape shape{vectorWidth, tileM, tileN, blockN, bf16Dot};
    SmallVector<linalg::GenericOp> matched;
    getOperation()->walk([&](linalg::GenericOp op) {
      if (op->hasAttr("moir.parallel") && isRowByRowContraction(op))
        matched.push_back(op);
    });
    OpBuilder b(&getContext());
    for (linalg::GenericOp op : matched) {
      b.setInsertionPoint(op);
      KernelBuilder(b, op.getLoc(), op, shape).build();
      op.erase();
    }
  }
};

} // namespace
