//===- PipelinesTest.cpp - phases and the graph pipeline -------------------===//

#include "MoE/IR/MoEOps.h"
#include "TestContext.h"
#include "moir/Pipelines/Pipelines.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

using namespace mlir;

namespace {

TEST(PipelinesTest, PhaseNamesRoundTrip) {
  for (moir::CompilePhase phase : {moir::CompilePhase::Input, moir::CompilePhase::Graph})
    EXPECT_EQ(moir::parseCompilePhase(moir::stringifyCompilePhase(phase)), phase);
  EXPECT_FALSE(moir::parseCompilePhase("llvm-ir-someday").has_value());
}

TEST(PipelinesTest, GraphPipelineDecomposesMoELayers) {
  std::unique_ptr<MLIRContext> owner = moir::test::makeContext();
  MLIRContext &context = *owner;
  const char *source = R"mlir(
    func.func @f(%x: tensor<?x16xf32>) -> tensor<?x16xf32> {
      %r = llm.weight "router" : tensor<4x16xf32>
      %g = llm.weight "gate" : tensor<4x24x16xf32>
      %u = llm.weight "up" : tensor<4x24x16xf32>
      %d = llm.weight "down" : tensor<4x16x24xf32>
      %y = moe.layer %x router %r experts(%g, %u, %d)
             routing #moe.routing<top_k = 2, scoring = softmax> activation silu
             : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>,
                tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
      return %y : tensor<?x16xf32>
    })mlir";
  // Default options: decomposed, then the router and the experts fused;
  // with the fusions off, the steps themselves.
  for (bool fuse : {true, false}) {
    OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, &context);
    ASSERT_TRUE(module);
    PassManager pm(&context);
    moir::GraphSection graph;
    graph.fuseRouter = fuse;
    graph.fuseExperts = fuse;
    moir::buildGraphPipeline(pm, graph);
    ASSERT_TRUE(succeeded(pm.run(*module)));
    int layers = 0, routes = 0, combines = 0, fusedRoutes = 0, fusedExperts = 0;
    module->walk([&](Operation *op) {
      layers += isa<moir::moe::LayerOp>(op);
      routes += isa<moir::moe::RouteOp>(op);
      combines += isa<moir::moe::CombineOp>(op);
      fusedRoutes += isa<moir::moe::FusedRouteOp>(op);
      fusedExperts += isa<moir::moe::FusedExpertsOp>(op);
    });
    EXPECT_EQ(layers, 0);
    EXPECT_EQ(routes, fuse ? 0 : 1);
    EXPECT_EQ(combines, fuse ? 0 : 1);
    EXPECT_EQ(fusedRoutes, fuse ? 1 : 0);
    EXPECT_EQ(fusedExperts, fuse ? 1 : 0);
  }
}

TEST(PipelinesTest, InputPhaseRejectsEmbeddedWeights) {
  std::unique_ptr<MLIRContext> owner = moir::test::makeContext();
  MLIRContext &context = *owner;
  const char *source = R"mlir(
    func.func @f() -> tensor<64x128xf32> {
      %w = arith.constant dense<1.0> : tensor<64x128xf32>
      return %w : tensor<64x128xf32>
    })mlir";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, &context);
  ASSERT_TRUE(module);
  std::string message;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    message = diag.str();
    return success();
  });
  PassManager pm(&context);
  moir::buildInputPipeline(pm);
  EXPECT_TRUE(failed(pm.run(*module)));
  EXPECT_NE(message.find("8192-element constant"), std::string::npos) << message;
}

} // namespace
