//===- Parallelize.cpp - moir.parallel linalg ops to scf.parallel ----------===//

#include "MoIR/IR/MoIRDialect.h"
#include "moir/Target/CPU/CPUTarget.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

namespace moir {
#define GEN_PASS_DEF_CPUPARALLELIZEPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// Sequential loops for `op`, its leading parallel dimensions (all but the
/// innermost loop) merged into one scf.parallel: the innermost loop stays a
/// plain loop LLVM can vectorize, and a reduction stays sequential.
LogicalResult parallelizeOuterLoops(RewriterBase &rewriter, linalg::LinalgOp op) {
  auto iterators = op.getIteratorTypesArray();
  size_t leading = 0;
  while (leading + 1 < iterators.size() && iterators[leading] == utils::IteratorType::parallel)
    ++leading;
  FailureOr<linalg::LinalgLoops> loops = linalg::linalgOpToLoops(rewriter, op);
  if (failed(loops))
    return failure();
  if (leading == 0)
    return success();
  SmallVector<scf::ForOp> nest;
  for (size_t i = 0; i < leading; ++i) {
    auto loop = dyn_cast<scf::ForOp>((*loops)[i]);
    if (!loop || loop.getNumRegionIterArgs() != 0)
      return failure();
    nest.push_back(loop);
  }
  SmallVector<Value> lbs, ubs, steps;
  for (scf::ForOp loop : nest) {
    lbs.push_back(loop.getLowerBound());
    ubs.push_back(loop.getUpperBound());
    steps.push_back(loop.getStep());
  }
  rewriter.setInsertionPoint(nest.front());
  auto parallel = scf::ParallelOp::create(rewriter, op.getLoc(), lbs, ubs, steps);
  for (auto [loop, iv] : llvm::zip(nest, parallel.getInductionVars()))
    rewriter.replaceAllUsesWith(loop.getInductionVar(), iv);
  Block *from = nest.back().getBody();
  Block *to = parallel.getBody();
  to->getOperations().splice(to->getTerminator()->getIterator(), from->getOperations(),
                             from->begin(), std::prev(from->end()));
  rewriter.eraseOp(nest.front());
  return success();
}

struct CPUParallelizePass : moir::impl::CPUParallelizePassBase<CPUParallelizePass> {
  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> marked;
    getOperation()->walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(moir::attrs::parallelName()) && op.hasPureBufferSemantics())
        marked.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : marked) {
      rewriter.setInsertionPoint(op);
      if (failed(parallelizeOuterLoops(rewriter, op))) {
        op->emitError("cannot give this op parallel loops");
        return signalPassFailure();
      }
      rewriter.eraseOp(op);
    }
  }
};

} // namespace
