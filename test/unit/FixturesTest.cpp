//===- FixturesTest.cpp - the committed reference fixtures are readable ----===//
//
// Each fixture's reference.safetensors (transformers' outputs) must read
// through MoIR's own safetensors reader with the layout the numerics tests
// rely on, and its checkpoint must import.
//
//===----------------------------------------------------------------------===//

#include "TestContext.h"
#include "moir/Frontend/Importer.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Path.h"

#include <algorithm>

#include <gtest/gtest.h>

#ifndef MOIR_FIXTURES_DIR
#error "MOIR_FIXTURES_DIR must name test/fixtures"
#endif

using namespace moir::frontend;

namespace {

class FixturesTest : public ::testing::TestWithParam<const char *> {};

std::string fixturePath(llvm::StringRef family, llvm::StringRef file = "") {
  llvm::SmallString<256> path(MOIR_FIXTURES_DIR);
  llvm::sys::path::append(path, family, file);
  return std::string(path);
}

TEST_P(FixturesTest, ReferenceOutputsHaveTheDocumentedLayout) {
  WeightStore store;
  llvm::Error err = readSafetensors(fixturePath(GetParam(), "reference.safetensors"), store);
  ASSERT_FALSE(err) << llvm::toString(std::move(err));
  const TensorInfo *prompt = store.lookup("prompt_ids");
  const TensorInfo *prefill = store.lookup("prefill_logits");
  const TensorInfo *generated = store.lookup("generated_ids");
  const TensorInfo *steps = store.lookup("step_logits");
  ASSERT_TRUE(prompt && prefill && generated && steps);
  EXPECT_EQ(prompt->dtype, DType::I64);
  EXPECT_EQ(generated->dtype, DType::I64);
  EXPECT_EQ(prefill->dtype, DType::F32);
  ASSERT_EQ(prompt->shape.size(), 1u);
  EXPECT_GE(prompt->shape[0], 8);
  EXPECT_GE(generated->shape[0], 8);
  ASSERT_EQ(prefill->shape.size(), 2u);
  EXPECT_EQ(prefill->shape[0], prompt->shape[0]);
  EXPECT_EQ(steps->shape, (llvm::SmallVector<int64_t>{generated->shape[0], prefill->shape[1]}));
  // The first generated token is the argmax of the prefill's last row.
  const float *last = reinterpret_cast<const float *>(store.getData(*prefill).data()) +
                      (prefill->shape[0] - 1) * prefill->shape[1];
  int64_t best = std::max_element(last, last + prefill->shape[1]) - last;
  EXPECT_EQ(best, reinterpret_cast<const int64_t *>(store.getData(*generated).data())[0]);
}

TEST_P(FixturesTest, CheckpointImportsAndVerifies) {
  auto context = moir::test::makeContext();
  WeightStore store;
  auto module = importModel(*context, fixturePath(GetParam()), store);
  ASSERT_TRUE(static_cast<bool>(module)) << llvm::toString(module.takeError());
  EXPECT_TRUE((*module)->lookupSymbol("forward"));
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, FixturesTest,
                         ::testing::Values("llama", "mistral", "mixtral", "apertus",
                                           "qwen2_moe", "qwen3_moe", "olmoe",
                                           "deepseek_v2", "deepseek_v3", "gemma3_tiny"));

} // namespace
