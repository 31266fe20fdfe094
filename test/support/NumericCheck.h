//===- NumericCheck.h - test values against reference values ----*- C++ -*-===//
//
// The one comparison every numeric test makes (moir-check-fixture,
// moir-compare-artifacts, the lowering unit tests): the largest |test - ref|
// relative to the largest |ref|, within a tolerance. A NaN or an infinity on
// either side fails (a running max() skips NaN, so an all-NaN output would
// pass), and so does a comparison of nothing.
//
// Header-only C++17 with no dependencies: the runtime-only tools include it
// by a relative path and build without MLIR, LLVM or gtest.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TEST_SUPPORT_NUMERICCHECK_H
#define MOIR_TEST_SUPPORT_NUMERICCHECK_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>

namespace moir::check {

/// How far test values are from reference values: one comparison, or the
/// worst of several parts (say, one per decode step) joined by `merge`.
struct Comparison {
  /// Values compared, over all parts.
  size_t count = 0;
  /// Parts that compared nothing.
  size_t emptyParts = 0;
  /// The worst part's largest |test - ref| over max(its largest finite
  /// |ref|, 1e-30), and where that difference is.
  double relativeError = 0;
  size_t index = 0;
  double test = 0, reference = 0;
  /// Values where either side is NaN or infinite, and the first of them.
  size_t nonFinite = 0;
  size_t nonFiniteIndex = 0;
  double nonFiniteTest = 0, nonFiniteReference = 0;

  bool comparedNothing() const { return count == 0 || emptyParts > 0; }

  bool within(double tolerance) const {
    return !comparedNothing() && nonFinite == 0 && relativeError <= tolerance;
  }

  /// Adds `part` as the values after this one's: its indices move up by
  /// `count`; the relative error is the worse of the two.
  void merge(const Comparison &part) {
    if (part.nonFinite && !nonFinite) {
      nonFiniteIndex = count + part.nonFiniteIndex;
      nonFiniteTest = part.nonFiniteTest;
      nonFiniteReference = part.nonFiniteReference;
    }
    nonFinite += part.nonFinite;
    if (part.relativeError > relativeError) {
      relativeError = part.relativeError;
      index = count + part.index;
      test = part.test;
      reference = part.reference;
    }
    emptyParts += part.emptyParts;
    count += part.count;
  }

  /// "relative error E (tolerance T) ok", or the same with "FAIL: " and why
  /// (where the worst or first non-finite value is, with both values). With
  /// `rowLength`, places are [row, column] (a logit's token and vocabulary
  /// id), otherwise flat indices.
  std::string describe(double tolerance, size_t rowLength = 0) const {
    char head[96];
    bool measured = !comparedNothing() && nonFinite == 0;
    if (measured)
      std::snprintf(head, sizeof head, "relative error %.3g (tolerance %.3g) ", relativeError,
                    tolerance);
    else
      std::snprintf(head, sizeof head, "relative error - (tolerance %.3g) ", tolerance);
    std::string out = head;
    if (within(tolerance))
      return out + "ok";
    if (comparedNothing())
      return out + "FAIL: nothing to compare";
    char why[192];
    if (nonFinite)
      std::snprintf(why, sizeof why, "FAIL: %zu value%s not finite, the first at %s: %.7g against reference %.7g",
                    nonFinite, nonFinite == 1 ? "" : "s", place(nonFiniteIndex, rowLength).c_str(),
                    nonFiniteTest, nonFiniteReference);
    else
      std::snprintf(why, sizeof why, "FAIL: largest difference at %s: %.7g against reference %.7g",
                    place(index, rowLength).c_str(), test, reference);
    return out + why;
  }

private:
  static std::string place(size_t i, size_t rowLength) {
    char text[64];
    if (rowLength)
      std::snprintf(text, sizeof text, "[%zu, %zu]", i / rowLength, i % rowLength);
    else
      std::snprintf(text, sizeof text, "index %zu", i);
    return text;
  }
};

/// Compares `n` test values with `n` reference values (any arithmetic types;
/// the arithmetic is in double).
template <typename T, typename R>
Comparison compare(const T *test, const R *reference, size_t n) {
  Comparison c;
  c.count = n;
  c.emptyParts = n == 0;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    double t = double(test[i]), r = double(reference[i]);
    if (!std::isfinite(t) || !std::isfinite(r)) {
      if (c.nonFinite++ == 0) {
        c.nonFiniteIndex = i;
        c.nonFiniteTest = t;
        c.nonFiniteReference = r;
      }
      continue;
    }
    double d = std::fabs(t - r);
    if (d > diff) {
      diff = d;
      c.index = i;
      c.test = t;
      c.reference = r;
    }
    scale = std::max(scale, std::fabs(r));
  }
  c.relativeError = diff / std::max(scale, 1e-30);
  return c;
}

} // namespace moir::check

#endif // MOIR_TEST_SUPPORT_NUMERICCHECK_H
