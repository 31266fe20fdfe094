//===- NumericCheckTest.cpp - the numeric checks can fail -----------------===//
//
// The comparison every numeric test uses (test/support/NumericCheck.h) must
// fail on a NaN or an infinity on either side, on an error just past the
// tolerance and on nothing to compare, and pass an error just inside it.
//
//===----------------------------------------------------------------------===//

#include "../support/NumericCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

using moir::check::Comparison;
using moir::check::compare;

namespace {

constexpr double tolerance = 1e-4;
const double nan = std::numeric_limits<double>::quiet_NaN();
const double inf = std::numeric_limits<double>::infinity();

// The largest |reference| is 2, so 2e-4 is the largest difference allowed.
const std::vector<double> reference = {2.0, -1.0, 0.5, 0.25};

Comparison against(const std::vector<double> &test, const std::vector<double> &ref = reference) {
  return compare(test.data(), ref.data(), test.size());
}

TEST(NumericCheckTest, NaNInTheTestFails) {
  Comparison c = against({2.0, nan, 0.5, 0.25});
  EXPECT_FALSE(c.within(tolerance));
  EXPECT_EQ(c.nonFinite, 1u);
  EXPECT_EQ(c.nonFiniteIndex, 1u);
  EXPECT_NE(c.describe(tolerance).find("FAIL: 1 value not finite, the first at index 1: nan "
                                       "against reference -1"),
            std::string::npos)
      << c.describe(tolerance);
}

TEST(NumericCheckTest, NaNInTheReferenceFails) {
  Comparison c = against(reference, {2.0, -1.0, nan, 0.25});
  EXPECT_FALSE(c.within(tolerance));
  EXPECT_EQ(c.nonFiniteIndex, 2u);
  EXPECT_TRUE(std::isnan(c.nonFiniteReference));
}

TEST(NumericCheckTest, AllNaNFails) {
  // A running max() skips NaN: the largest difference of an all-NaN output
  // would stay 0.
  Comparison c = against({nan, nan, nan, nan});
  EXPECT_FALSE(c.within(tolerance));
  EXPECT_EQ(c.nonFinite, 4u);
  EXPECT_NE(c.describe(tolerance).find("4 values not finite"), std::string::npos);
}

TEST(NumericCheckTest, InfinityOnEitherSideFails) {
  EXPECT_FALSE(against({2.0, -1.0, inf, 0.25}).within(tolerance));
  EXPECT_FALSE(against({2.0, -inf, 0.5, 0.25}).within(tolerance));
  EXPECT_FALSE(against(reference, {2.0, -1.0, 0.5, -inf}).within(tolerance));
  // Equal infinities are not a match either.
  EXPECT_FALSE(against({inf, -1.0, 0.5, 0.25}, {inf, -1.0, 0.5, 0.25}).within(tolerance));
}

TEST(NumericCheckTest, JustPastTheToleranceFails) {
  Comparison c = against({2.0, -1.0, 0.5 + 2e-4 * (1 + 1e-6), 0.25});
  EXPECT_FALSE(c.within(tolerance));
  EXPECT_GT(c.relativeError, tolerance);
  EXPECT_EQ(c.index, 2u);
  EXPECT_NE(c.describe(tolerance, 2).find("FAIL: largest difference at [1, 0]"),
            std::string::npos)
      << c.describe(tolerance, 2);
}

TEST(NumericCheckTest, JustInsideTheTolerancePasses) {
  Comparison c = against({2.0, -1.0, 0.5 + 2e-4 * (1 - 1e-6), 0.25});
  EXPECT_TRUE(c.within(tolerance)) << c.describe(tolerance);
  EXPECT_EQ(c.describe(tolerance), "relative error 0.0001 (tolerance 0.0001) ok");
}

TEST(NumericCheckTest, FloatValuesAgainstFloatReferences) {
  // The tools compare the runtime's f32 logits with f32 references.
  std::vector<float> ref = {2.0f, -1.0f, 0.5f}, past = {2.0f, -1.0f, 0.50021f},
                     inside = {2.0f, -1.0f, 0.50019f};
  EXPECT_FALSE(compare(past.data(), ref.data(), 3).within(tolerance));
  EXPECT_TRUE(compare(inside.data(), ref.data(), 3).within(tolerance));
  std::vector<float> nanTest = {2.0f, std::nanf(""), 0.5f};
  EXPECT_FALSE(compare(nanTest.data(), ref.data(), 3).within(tolerance));
}

TEST(NumericCheckTest, RelativeToTheLargestReferenceMagnitude) {
  // Not per element: 3.9e-4 off a value of 1 is within 1e-4 of |-4|.
  EXPECT_TRUE(against({-4.0, 1.0 + 3.9e-4}, {-4.0, 1.0}).within(tolerance));
  EXPECT_FALSE(against({-4.0, 1.0 + 4.1e-4}, {-4.0, 1.0}).within(tolerance));
}

TEST(NumericCheckTest, NothingToCompareFails) {
  std::vector<double> none;
  Comparison c = compare(none.data(), none.data(), 0);
  EXPECT_FALSE(c.within(tolerance));
  EXPECT_EQ(c.describe(tolerance), "relative error - (tolerance 0.0001) FAIL: nothing to compare");
  // Nor does a merge of no parts, or of parts of which one is empty.
  EXPECT_FALSE(Comparison().within(tolerance));
  Comparison parts;
  parts.merge(against(reference, reference));
  EXPECT_TRUE(parts.within(tolerance));
  parts.merge(c);
  EXPECT_FALSE(parts.within(tolerance));
}

TEST(NumericCheckTest, MergeKeepsTheWorstPartAndCountsItsPlace) {
  // Each part (say, one decode step) is relative to its own largest |ref|.
  Comparison steps;
  steps.merge(against({2.0, -1.0, 0.5, 0.25 + 1e-4}));          // 5e-5
  steps.merge(against({2.0, -1.0 - 3e-4, 0.5, 0.25}));          // 1.5e-4
  steps.merge(against({2.0 + 2e-4, -1.0, 0.5, 0.25}));          // 1e-4
  EXPECT_EQ(steps.count, 12u);
  EXPECT_NEAR(steps.relativeError, 1.5e-4, 1e-12);
  EXPECT_EQ(steps.index, 5u);
  EXPECT_FALSE(steps.within(tolerance));
  EXPECT_TRUE(steps.within(2e-4));
  // A non-finite value in a later part fails the whole and is placed in it.
  steps.merge(against({2.0, -1.0, 0.5, nan}));
  EXPECT_FALSE(steps.within(1.0));
  EXPECT_EQ(steps.nonFiniteIndex, 15u);
}

} // namespace
