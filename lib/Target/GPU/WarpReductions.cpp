//===- WarpReductions.cpp - one warp per reduced output --------------------===//

#include "moir/Target/GPU/GPUTarget.h"
#include "MoIR/IR/MoIRDialect.h"

#include "Contractions.h"
#include "HostLevel.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

namespace moir {
#define GEN_PASS_DEF_GPUWARPREDUCTIONSPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct Match {
  Operation *combiner; // arith.addf or arith.maximumf
  Value element;       // what each reduction step contributes
};

std::optional<Match> matchReduction(linalg::GenericOp op, int64_t warpSize, int64_t minReduction) {
  if (!op.hasPureBufferSemantics() || op.getNumDpsInits() != 1)
    return std::nullopt;
  unsigned loops = op.getNumLoops();
  auto iterators = op.getIteratorTypesArray();
  if (loops == 0 || op.getNumReductionLoops() != 1 ||
      iterators.back() != utils::IteratorType::reduction)
    return std::nullopt;
  OpOperand *init = op.getDpsInitOperand(0);
  if (!cast<MemRefType>(init->get().getType()).getElementType().isF32())
    return std::nullopt;
  // Lane 0 stores at the output map applied to the parallel indices alone:
  // the map must not use the reduction dimension.
  if (op.getMatchingIndexingMap(init).isFunctionOfDim(loops - 1))
    return std::nullopt;
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  if (!ShapedType::isDynamic(ranges.back()) && ranges.back() < minReduction)
    return std::nullopt;
  Block *body = op.getBlock();
  auto yield = cast<linalg::YieldOp>(body->getTerminator());
  Operation *combiner = yield.getValues()[0].getDefiningOp();
  if (!combiner || !isa<arith::AddFOp, arith::MaximumFOp>(combiner) ||
      combiner->getBlock() != body)
    return std::nullopt;
  BlockArgument acc = op.getMatchingBlockArgument(init);
  Value element;
  if (combiner->getOperand(0) == acc)
    element = combiner->getOperand(1);
  else if (combiner->getOperand(1) == acc)
    element = combiner->getOperand(0);
  else
    return std::nullopt;
  // The accumulator feeds the combiner and nothing else.
  if (!acc.hasOneUse())
    return std::nullopt;
  return Match{combiner, element};
}

Value combine(OpBuilder &b, Operation *combiner, Value lhs, Value rhs) {
  IRMapping map;
  map.map(combiner->getOperand(0), lhs);
  map.map(combiner->getOperand(1), rhs);
  return b.clone(*combiner, map)->getResult(0);
}

void rewrite(linalg::GenericOp op, const Match &match, int64_t warpSize) {
  linalg::FillOp fill = moir::gpu::foldableFill(op);
  OpBuilder b(op);
  Location loc = op.getLoc();
  SmallVector<Value> bounds;
  for (Range r : cast<linalg::LinalgOp>(op.getOperation()).createLoopRanges(b, loc))
    bounds.push_back(getValueOrCreateConstantIndexOp(b, loc, r.size));
  unsigned loops = op.getNumLoops();
  Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
  Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
  Value lanes = arith::ConstantIndexOp::create(b, loc, warpSize);
  SmallVector<Value> lbs(loops, c0), steps(loops, c1), ubs(bounds.begin(), bounds.end() - 1);
  ubs.push_back(lanes);
  auto parallel = scf::ParallelOp::create(b, loc, lbs, ubs, steps);
  moir::attrs::mark(parallel, moir::attrs::warpReduceName());
  b.setInsertionPoint(parallel.getBody()->getTerminator());
  SmallVector<Value> ivs(parallel.getInductionVars());
  Value lane = ivs.back();


  Type f32 = b.getF32Type();
  Value neutral = arith::ConstantOp::create(
      b, loc, f32,
      isa<arith::AddFOp>(match.combiner)
          ? b.getF32FloatAttr(0.0f)
          : b.getFloatAttr(f32, APFloat::getInf(APFloat::IEEEsingle(), /*Negative=*/true)));
  // Each lane combines its elements k = lane + j * warp. The main loop takes
  // `unroll` of them per trip into independent partials (more loads in
  // flight per lane); a remainder loop takes the rest.
  constexpr int64_t unroll = 4;
  Value K = bounds.back();
  Value chunk = arith::ConstantIndexOp::create(b, loc, warpSize * unroll);
  Value mainEnd = arith::SubIOp::create(b, loc, K, arith::RemUIOp::create(b, loc, K, chunk));
  SmallVector<Value> outer(ivs.begin(), ivs.end() - 1);
  // The contribution of element k, cloned from the generic's body.
  auto element = [&](Value k) -> Value {
    SmallVector<Value> loopIvs(outer);
    loopIvs.push_back(k);
    IRMapping map;
    for (OpOperand *input : op.getDpsInputOperands()) {
      BlockArgument arg = op.getMatchingBlockArgument(input);
      if (arg.use_empty())
        continue;
      map.map(arg, memref::LoadOp::create(b, loc, input->get(),
                                          moir::gpu::applyIndexing(b, loc, op.getMatchingIndexingMap(input), loopIvs)));
    }
    for (Operation &inner : op.getBlock()->without_terminator()) {
      if (&inner == match.combiner)
        continue;
      if (auto index = dyn_cast<linalg::IndexOp>(inner)) {
        map.map(index.getResult(), loopIvs[index.getDim()]);
        continue;
      }
      b.clone(inner, map);
    }
    return map.lookupOrDefault(match.element);
  };
  SmallVector<Value> neutrals(unroll, neutral);
  auto main = scf::ForOp::create(b, loc, c0, mainEnd, chunk, neutrals);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(main.getBody());
    SmallVector<Value> next;
    for (int64_t j = 0; j < unroll; ++j) {
      Value k = arith::AddIOp::create(
          b, loc, main.getInductionVar(),
          arith::AddIOp::create(b, loc, lane,
                                arith::ConstantIndexOp::create(b, loc, j * warpSize)));
      next.push_back(combine(b, match.combiner, main.getRegionIterArgs()[j], element(k)));
    }
    scf::YieldOp::create(b, loc, next);
  }
  Value partial = main.getResult(0);
  for (int64_t j = 1; j < unroll; ++j)
    partial = combine(b, match.combiner, partial, main.getResult(j));
  Value rest = arith::AddIOp::create(b, loc, mainEnd, lane);
  auto strided = scf::ForOp::create(b, loc, rest, K, lanes, ValueRange{partial});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(strided.getBody());
    Value next = combine(b, match.combiner, strided.getRegionIterArgs()[0],
                         element(strided.getInductionVar()));
    scf::YieldOp::create(b, loc, next);
  }
  partial = strided.getResult(0);
  for (int64_t offset = warpSize / 2; offset > 0; offset /= 2) {
    auto shuffle = gpu::ShuffleOp::create(b, loc, partial, static_cast<int32_t>(offset),
                                          static_cast<int32_t>(warpSize), gpu::ShuffleMode::XOR);
    partial = combine(b, match.combiner, partial, shuffle.getShuffleResult());
  }
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, lane, c0);
  auto store = scf::IfOp::create(b, loc, first, /*withElseRegion=*/false);
  b.setInsertionPointToStart(&store.getThenRegion().front());
  OpOperand *init = op.getDpsInitOperand(0);
  SmallVector<Value> outIvs(ivs.begin(), ivs.end() - 1);
  outIvs.push_back(c0); // the reduction dim does not appear in the output map
  SmallVector<Value> at = moir::gpu::applyIndexing(b, loc, op.getMatchingIndexingMap(init), outIvs);
  Value old = fill ? fill.getDpsInputOperand(0)->get()
                   : memref::LoadOp::create(b, loc, init->get(), at).getResult();
  memref::StoreOp::create(b, loc, combine(b, match.combiner, old, partial), init->get(), at);
  op.erase();
  if (fill)
    fill.erase();
}

struct GPUWarpReductionsPass
    : moir::impl::GPUWarpReductionsPassBase<GPUWarpReductionsPass> {
  using GPUWarpReductionsPassBase::GPUWarpReductionsPassBase;
  void runOnOperation() override {
    // Parallel dimensions first: a reduction between parallel dimensions (the
    // CPU's order for attention's weighted sums, which walks cache rows) would
    // leave the later parallel dimensions as serial loops inside each thread.
    SmallVector<linalg::GenericOp> generics;
    getOperation().walk([&](linalg::GenericOp op) { generics.push_back(op); });
    IRRewriter rewriter(&getContext());
    for (linalg::GenericOp op : generics) {
      auto iterators = op.getIteratorTypesArray();
      SmallVector<unsigned> order;
      for (unsigned i = 0; i < iterators.size(); ++i)
        if (iterators[i] == utils::IteratorType::parallel)
          order.push_back(i);
      for (unsigned i = 0; i < iterators.size(); ++i)
        if (iterators[i] != utils::IteratorType::parallel)
          order.push_back(i);
      if (llvm::equal(order, llvm::seq<unsigned>(0, iterators.size())))
        continue;
      rewriter.setInsertionPoint(op);
      if (failed(linalg::interchangeGenericOp(rewriter, op, order))) {
        op.emitError("cannot move the parallel dimensions first");
        return signalPassFailure();
      }
    }
    SmallVector<std::pair<linalg::GenericOp, Match>> todo;
    getOperation().walk([&](linalg::GenericOp op) {
      // Only where moir-gpu-offload keeps host control: a warp reduction
      // cannot run inside a one-thread kernel.
      if (!moir::gpu::staysOnHost(op))
        return;
      if (std::optional<Match> m = matchReduction(op, warpSize, minReduction))
        todo.push_back({op, *m});
    });
    for (auto &[op, match] : todo)
      rewrite(op, match, warpSize);
  }
};

} // namespace

linalg::FillOp moir::gpu::foldableFill(linalg::GenericOp op) {
  auto fill = dyn_cast_or_null<linalg::FillOp>(op->getPrevNode());
  if (!fill || !fill.hasPureBufferSemantics() ||
      fill.getDpsInitOperand(0)->get() != op.getDpsInitOperand(0)->get())
    return nullptr;
  Value buffer = op.getDpsInitOperand(0)->get();
  AffineMap out = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  if (!out.isProjectedPermutation() || out.getNumResults() != op.getNumParallelLoops() ||
      fill.getDpsInputOperand(0)->get().getType() !=
          cast<MemRefType>(buffer.getType()).getElementType())
    return nullptr;
  // The generic must not also read the buffer as an input.
  for (OpOperand *input : op.getDpsInputOperands())
    if (input->get() == buffer)
      return nullptr;
  return fill;
}

SmallVector<Value> moir::gpu::applyIndexing(OpBuilder &b, Location loc, AffineMap map,
                                            ValueRange ivs) {
  SmallVector<Value> out;
  for (AffineExpr expr : map.getResults())
    out.push_back(affine::AffineApplyOp::create(
        b, loc, AffineMap::get(map.getNumDims(), 0, expr), ivs));
  return out;
}
