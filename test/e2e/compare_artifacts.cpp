//===- compare_artifacts.cpp - one model, two artifacts, same numbers ------===//
//
// moir-compare-artifacts REFERENCE.moir TEST.moir [--prompt N] [--steps N]
//                        [--tolerance X] [--seed S]
//
// A backend conformance check: the same checkpoint compiled for two targets
// (say the CPU and a GPU) must compute the same logits. Runs a random prompt
// (from --seed, default: the clock, so every run sees fresh data) through
// both, then --steps greedy decode steps fed the reference's tokens, and
// compares every logit row within TOLERANCE (default 1e-4) of the largest
// reference |logit|. Prints one line per check; exits non-zero on a failure.
// Needs only the runtime.
//
//===----------------------------------------------------------------------===//

#include "moir/runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

struct Run {
  moir_model *model = nullptr;
  moir_session *session = nullptr;
  ~Run() {
    moir_session_destroy(session);
    moir_model_close(model);
  }
  bool open(const char *path) {
    if (moir_model_open(path, &model) != MOIR_OK ||
        moir_session_create(model, 0, &session) != MOIR_OK) {
      std::fprintf(stderr, "%s\n", moir_last_error());
      return false;
    }
    return true;
  }
  const float *run(const std::vector<int32_t> &tokens, int64_t *rows) {
    if (moir_session_run(session, tokens.data(), tokens.size()) != MOIR_OK) {
      std::fprintf(stderr, "%s\n", moir_last_error());
      return nullptr;
    }
    return moir_session_all_logits(session, rows);
  }
};

double relativeError(const float *test, const float *ref, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(double(test[i]) - ref[i]));
    scale = std::max(scale, std::fabs(double(ref[i])));
  }
  return std::isfinite(diff) ? diff / std::max(scale, 1e-30) : INFINITY;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: moir-compare-artifacts REFERENCE.moir TEST.moir [--prompt N] "
                         "[--steps N] [--tolerance X] [--seed S]\n");
    return 2;
  }
  int64_t promptLength = 13, steps = 8;
  double tolerance = 1e-4;
  uint64_t seed = std::chrono::steady_clock::now().time_since_epoch().count();
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--prompt") promptLength = std::atoll(argv[i + 1]);
    else if (a == "--steps") steps = std::atoll(argv[i + 1]);
    else if (a == "--tolerance") tolerance = std::atof(argv[i + 1]);
    else if (a == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "moir-compare-artifacts: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  Run ref, test;
  if (!ref.open(argv[1]) || !test.open(argv[2]))
    return 1;
  int64_t vocab = moir_model_vocab_size(ref.model);
  if (moir_model_vocab_size(test.model) != vocab) {
    std::fprintf(stderr, "the artifacts have different vocabularies\n");
    return 1;
  }
  std::mt19937_64 rng(seed);
  std::vector<int32_t> prompt(promptLength);
  for (int32_t &t : prompt)
    t = static_cast<int32_t>(rng() % vocab);
  int64_t refRows = 0, testRows = 0;
  const float *a = ref.run(prompt, &refRows);
  const float *b = a ? test.run(prompt, &testRows) : nullptr;
  if (!a || !b || refRows != testRows)
    return 1;
  double prefill = relativeError(b, a, refRows * vocab);
  bool ok = prefill <= tolerance;
  std::printf("seed %llu: prefill (%lld tokens): relative error %.3g (tolerance %.3g) %s\n",
              (unsigned long long)seed, (long long)refRows, prefill, tolerance,
              prefill <= tolerance ? "ok" : "FAIL");
  double worst = 0;
  int64_t sameArgmax = 0;
  std::vector<float> refLast(a + (refRows - 1) * vocab, a + refRows * vocab);
  std::vector<float> testLast(b + (testRows - 1) * vocab, b + testRows * vocab);
  for (int64_t s = 0; s < steps; ++s) {
    int32_t next = static_cast<int32_t>(std::max_element(refLast.begin(), refLast.end()) -
                                        refLast.begin());
    sameArgmax += next == std::max_element(testLast.begin(), testLast.end()) - testLast.begin();
    const float *ra = ref.run({next}, &refRows);
    const float *rb = ra ? test.run({next}, &testRows) : nullptr;
    if (!ra || !rb)
      return 1;
    worst = std::max(worst, relativeError(rb, ra, vocab));
    refLast.assign(ra, ra + vocab);
    testLast.assign(rb, rb + vocab);
  }
  ok &= worst <= tolerance;
  std::printf("decode (%lld steps): worst relative error %.3g %s; same greedy token %lld of %lld\n",
              (long long)steps, worst, worst <= tolerance ? "ok" : "FAIL", (long long)sameArgmax,
              (long long)steps);
  return ok ? 0 : 1;
}
