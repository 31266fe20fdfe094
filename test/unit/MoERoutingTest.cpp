//===- MoERoutingTest.cpp - routing attribute checks -----------------------===//

#include "MoE/IR/MoEOps.h"
#include "TestContext.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace moir::moe;

namespace {

class MoERoutingTest : public ::testing::Test {
protected:
  RoutingAttr parse(StringRef text) {
    return dyn_cast_or_null<RoutingAttr>(parseAttribute(text, &context));
  }
  std::unique_ptr<MLIRContext> owner = moir::test::makeContext();
  MLIRContext &context = *owner;
};

TEST_F(MoERoutingTest, DeepSeekV3RoutingFitsItsExperts) {
  RoutingAttr r = parse("#moe.routing<top_k = 8, scoring = sigmoid, method = noaux_tc, "
                        "n_group = 8, topk_group = 4, norm_topk_prob = true, scaling = 2.5>");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r.needsCorrectionBias());
  EXPECT_DOUBLE_EQ(r.getScalingFactor(), 2.5);
  auto emit = [&] { return emitError(UnknownLoc::get(&context)); };
  EXPECT_TRUE(succeeded(r.verifyForExperts(emit, 256)));

  std::string message;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    message = diag.str();
    return success();
  });
  // 8 groups of 2 experts, 1 group chosen: only 2 candidates for top-8.
  RoutingAttr tight = parse("#moe.routing<top_k = 8, scoring = sigmoid, method = noaux_tc, "
                            "n_group = 8, topk_group = 1>");
  ASSERT_TRUE(tight);
  EXPECT_TRUE(failed(tight.verifyForExperts(emit, 16)));
  EXPECT_NE(message.find("cannot supply top_k = 8"), std::string::npos) << message;
  EXPECT_TRUE(failed(r.verifyForExperts(emit, 100)));
  EXPECT_NE(message.find("do not split into n_group = 8"), std::string::npos) << message;
}

TEST_F(MoERoutingTest, MixtralDefaultsPrintCompactly) {
  RoutingAttr r = parse("#moe.routing<top_k = 2, scoring = softmax, norm_topk_prob = true>");
  ASSERT_TRUE(r);
  EXPECT_EQ(r.getMethod(), TopkMethod::greedy);
  EXPECT_EQ(r.getNGroup(), 1);
  EXPECT_DOUBLE_EQ(r.getScalingFactor(), 1.0);
  std::string printed;
  llvm::raw_string_ostream os(printed);
  Attribute(r).print(os);
  EXPECT_EQ(printed, "#moe.routing<top_k = 2, scoring = softmax, norm_topk_prob = true>");
}

} // namespace
