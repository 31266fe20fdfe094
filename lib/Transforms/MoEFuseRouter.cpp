//===- MoEFuseRouter.cpp - router matmul + routing as one op ---------------===//

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "MoE/IR/MoEOps.h"
#include "moir/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_MOEFUSEROUTERPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

struct FuseRouter : OpRewritePattern<moe::RouteOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(moe::RouteOp route, PatternRewriter &rewriter) const override {
    auto linear = route.getLogits().getDefiningOp<llm::LinearOp>();
    if (!linear || linear.getBias() || !linear->hasOneUse())
      return rewriter.notifyMatchFailure(route, "logits are not a router product used once");
    if (isa<llm::QTensorType>(linear.getWeight().getType()))
      return rewriter.notifyMatchFailure(route, "quantized router weight");
    rewriter.replaceOpWithNewOp<moe::FusedRouteOp>(
        route, route.getWeights().getType(), route.getIds().getType(), linear.getInput(),
        linear.getWeight(), route.getCorrectionBias(), route.getRoutingAttr());
    return success();
  }
};

struct MoEFuseRouterPass : moir::impl::MoEFuseRouterPassBase<MoEFuseRouterPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseRouter>(&getContext());
    if (failed(moir::applyPatternsKeepingLayers(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
