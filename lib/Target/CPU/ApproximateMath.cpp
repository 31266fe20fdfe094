//===- ApproximateMath.cpp - inline polynomial exp for CPUs ----------------===//

#include "moir/Target/CPU/CPUTarget.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_CPUAPPROXIMATEMATHPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct CPUApproximateMathPass
    : moir::impl::CPUApproximateMathPassBase<CPUApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathPolynomialApproximationPatterns(patterns, [](StringRef name) {
      return name == "exp" || name == math::ExpOp::getOperationName();
    });
    // Only the exps (and the ops their expansions create) are visited: a
    // whole-module greedy rewrite visits and folds every op of the kernels
    // too (0.69 of 6.3 G instructions of moirc's MLIR phases on a Q4_K int8
    // compile; bench/RESULTS.md). The canonicalizer after the OpenMP
    // conversion folds the expansions' constants; the machine code is the
    // same.
    SmallVector<Operation *> exps;
    getOperation()->walk([&](math::ExpOp op) { exps.push_back(op); });
    if (exps.empty())
      return;
    GreedyRewriteConfig config;
    config.setStrictness(GreedyRewriteStrictness::ExistingAndNewOps);
    if (failed(applyOpPatternsGreedily(exps, std::move(patterns), config)))
      return signalPassFailure();
  }
};

} // namespace
