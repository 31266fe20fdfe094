//===- LLMTypesTest.cpp - quantized weight types and attributes ------------===//

#include "LLM/IR/LLMOps.h"
#include "TestContext.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace moir::llm;

namespace {

class LLMTypesTest : public ::testing::Test {
protected:

  QTensorType parse(StringRef text) {
    return dyn_cast_or_null<QTensorType>(parseType(text, &context));
  }

  std::unique_ptr<MLIRContext> owner = moir::test::makeContext();
  MLIRContext &context = *owner;
};

TEST_F(LLMTypesTest, BlockScalesRoundUpPartialTiles) {
  // DeepSeek-V3 FP8: a 7168x2048 weight with 128x128 tiles has 56x16 scales;
  // 200x300 has partial tiles at both edges.
  QTensorType full = parse(
      "!llm.qtensor<7168x2048xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>");
  ASSERT_TRUE(full);
  EXPECT_EQ(*full.getScaleShape(), (SmallVector<int64_t>{56, 16}));
  EXPECT_EQ(full.getStorageBytes(), 7168 * 2048);

  QTensorType partial = parse(
      "!llm.qtensor<200x300xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>");
  ASSERT_TRUE(partial);
  EXPECT_EQ(*partial.getScaleShape(), (SmallVector<int64_t>{2, 3}));
}

TEST_F(LLMTypesTest, Int4GroupsPackTwoPerByte) {
  QTensorType t = parse(
      "!llm.qtensor<96x160xi4, #llm.quant<kind = group, group = 32, zero_point = true, scale = f16>>");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t.getScaleShape(), (SmallVector<int64_t>{96, 5}));
  EXPECT_EQ(t.getStorageBytes(), 96 * 80);
  EXPECT_TRUE(t.getScheme().getScaleElementType().isF16());
}

TEST_F(LLMTypesTest, GGUFBlocksEmbedScales) {
  QTensorType q4k = parse("!llm.qtensor<64x512xi4, #llm.quant<kind = gguf, format = q4_k>>");
  ASSERT_TRUE(q4k);
  EXPECT_FALSE(q4k.getScaleShape().has_value());
  // 64 rows x 2 blocks of 256 values, 144 bytes each.
  EXPECT_EQ(q4k.getStorageBytes(), 64 * 2 * 144);
  QTensorType q80 = parse("!llm.qtensor<8x64xi8, #llm.quant<kind = gguf, format = q8_0>>");
  ASSERT_TRUE(q80);
  EXPECT_EQ(q80.getStorageBytes(), 8 * 2 * 34);
  QTensorType q6k = parse("!llm.qtensor<4x256xi6, #llm.quant<kind = gguf, format = q6_k>>");
  ASSERT_TRUE(q6k);
  EXPECT_EQ(q6k.getStorageBytes(), 4 * 210);
}

TEST_F(LLMTypesTest, PerChannelAndPerTensorScales) {
  QTensorType perChannel =
      parse("!llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>");
  ASSERT_TRUE(perChannel);
  EXPECT_EQ(*perChannel.getScaleShape(), (SmallVector<int64_t>{256}));
  QTensorType perTensor =
      parse("!llm.qtensor<16x16xf8E5M2, #llm.quant<kind = per_tensor>>");
  ASSERT_TRUE(perTensor);
  EXPECT_TRUE(perTensor.getScaleShape()->empty());
  EXPECT_EQ(perTensor.getDequantizedType(Float32Type::get(&context)),
            RankedTensorType::get({16, 16}, Float32Type::get(&context)));
}

TEST_F(LLMTypesTest, InvalidSchemesAreRejectedWithAReason) {
  std::string message;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    message = diag.str();
    return success();
  });
  EXPECT_FALSE(parse("!llm.qtensor<64x100xi4, #llm.quant<kind = gguf, format = q4_k>>"));
  EXPECT_NE(message.find("not a multiple of the q4_k block size 256"), std::string::npos)
      << message;
  EXPECT_FALSE(parse("!llm.qtensor<64x128xi4, #llm.quant<kind = block, block = [128, 128]>>"));
  EXPECT_NE(message.find("needs 8-bit storage"), std::string::npos) << message;
}

} // namespace
