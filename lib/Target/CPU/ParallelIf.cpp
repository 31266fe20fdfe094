//===- ParallelIf.cpp - no fork for a region of one work item --------------===//

#include "moir/Target/CPU/CPUTarget.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/OpenMP/OpenMPDialect.h"
#include "mlir/IR/Matchers.h"

namespace moir {
#define GEN_PASS_DEF_CPUPARALLELIFPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// `v` as a value usable just before `region` (an op): itself where it is
/// defined outside the op, a copy of it there where it is a constant inside;
/// null otherwise.
Value availableBefore(OpBuilder &b, Value v, Operation *region) {
  if (!region->isAncestor(v.getParentRegion()->getParentOp()))
    return v;
  Attribute value;
  if (Operation *def = v.getDefiningOp(); def && matchPattern(v, m_Constant(&value)))
    return b.clone(*def)->getResult(0);
  return Value();
}

/// The condition "more than one iteration" of the worksharing loop nest
/// that `parallel` holds, built before it; null where the nest's shape or
/// bounds do not allow it.
Value moreThanOneTrip(omp::ParallelOp parallel, omp::WsloopOp loop) {
  auto nest = dyn_cast_or_null<omp::LoopNestOp>(loop.getWrappedLoop());
  if (!nest || nest.getLoopInclusive())
    return Value();
  OpBuilder b(parallel);
  Location loc = parallel.getLoc();
  Value trips;
  for (auto [lo, hi, step] :
       llvm::zip(nest.getLoopLowerBounds(), nest.getLoopUpperBounds(), nest.getLoopSteps())) {
    Value l = availableBefore(b, lo, parallel), h = availableBefore(b, hi, parallel),
          s = availableBefore(b, step, parallel);
    if (!l || !h || !s || !l.getType().isIntOrIndex())
      return Value();
    // Steps are positive (scf.parallel's are); an empty range gives <= 0.
    Value n = arith::CeilDivSIOp::create(b, loc, arith::SubIOp::create(b, loc, h, l), s);
    trips = trips ? arith::MulIOp::create(b, loc, trips, n).getResult() : n;
  }
  if (!trips)
    return Value();
  Value one = arith::ConstantOp::create(b, loc, b.getIntegerAttr(trips.getType(), 1));
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, trips, one);
}

struct CPUParallelIfPass
    : moir::impl::CPUParallelIfPassBase<CPUParallelIfPass> {
  void runOnOperation() override {
    getOperation()->walk([](omp::ParallelOp parallel) {
      // The region's only worksharing loop decides. (Running a region on
      // one thread is always allowed: its loops then give that thread
      // every iteration.)
      auto loops = parallel.getRegion().front().getOps<omp::WsloopOp>();
      if (parallel.getIfExpr() || std::distance(loops.begin(), loops.end()) != 1)
        return;
      if (Value fork = moreThanOneTrip(parallel, *loops.begin()))
        parallel.getIfExprMutable().assign(fork);
    });
  }
};

} // namespace
