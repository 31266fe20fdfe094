//===- compare_artifacts.cpp - one model, two artifacts, same numbers ------===//
//
// moir-compare-artifacts REFERENCE.moir TEST.moir [--prompt N] [--steps N]
//                        [--tolerance X] [--seed S] [--redraws N]
//
// A backend conformance check: the same checkpoint compiled for two targets
// (say the CPU and a GPU) must compute the same logits. Runs a random prompt
// (from --seed, default: the clock, so every run sees fresh data) through
// both, then --steps greedy decode steps fed the reference's tokens, and
// compares every logit row within TOLERANCE (default 1e-4) of the largest
// reference |logit|; a NaN or an infinity in either fails
// (test/support/NumericCheck.h). --redraws N draws a new prompt after a finite
// failure, up to N times (for models whose expert choices can nearly tie).
// Prints one line per check; exits non-zero on a failure. Needs only the
// runtime.
//
//===----------------------------------------------------------------------===//

#include "../support/NumericCheck.h"
#include "moir/comm.h"
#include "moir/runtime.h"

#include <algorithm>
#include <chrono>
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
    // Under mpirun, every rank runs the comparison; rank 0 reports it.
    int rank = 0, ranks = 1;
    if (moir_model_parallel(model, &rank, &ranks) == MOIR_OK && rank > 0 &&
        !std::freopen("/dev/null", "w", stdout))
      return false;
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

} // namespace

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: moir-compare-artifacts REFERENCE.moir TEST.moir [--prompt N] "
                         "[--steps N] [--tolerance X] [--seed S] [--redraws N]\n");
    return 2;
  }
  int64_t promptLength = 13, steps = 8;
  int64_t redraws = 0;
  double tolerance = 1e-4;
  uint64_t seed = std::chrono::steady_clock::now().time_since_epoch().count();
  for (int i = 3; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 == argc) {
      std::fprintf(stderr, "moir-compare-artifacts: '%s' needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--prompt") promptLength = std::atoll(argv[i + 1]);
    else if (a == "--steps") steps = std::atoll(argv[i + 1]);
    else if (a == "--tolerance") tolerance = std::atof(argv[i + 1]);
    else if (a == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--redraws") redraws = std::atoll(argv[i + 1]);
    else {
      std::fprintf(stderr, "moir-compare-artifacts: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (promptLength < 1 || steps < 0 || redraws < 0) {
    std::fprintf(stderr, "moir-compare-artifacts: --prompt must be at least 1, --steps and "
                         "--redraws at least 0\n");
    return 2;
  }
  Run ref, test;
  if (!ref.open(argv[1]) || !test.open(argv[2]))
    return 1;
  // The ranks of a parallel artifact must run the same prompts: rank 0's
  // seed (fresh from the clock by default) for all.
  int rank = 0, ranks = 1;
  moir_comm *world = nullptr;
  if (moir_model_parallel(test.model, &rank, &ranks) == MOIR_OK && ranks > 1 &&
      (moir_comm_world(&world) != MOIR_OK ||
       moir_comm_broadcast(world, &seed, sizeof seed, 0) != MOIR_OK)) {
    std::fprintf(stderr, "%s\n", moir_last_error());
    return 1;
  }
  int64_t vocab = moir_model_vocab_size(ref.model);
  if (vocab < 1 || moir_model_vocab_size(test.model) != vocab) {
    std::fprintf(stderr, "the artifacts have different (or empty) vocabularies\n");
    return 1;
  }
  // One comparison on the prompt drawn from SEED; 1 when it fails, 0 when it
  // passes, -1 on a run error. NONFINITE reports a NaN or an infinity.
  auto compareOnce = [&](uint64_t drawSeed, bool &nonFinite) -> int {
    moir_session_reset(ref.session);
    moir_session_reset(test.session);
    std::mt19937_64 rng(drawSeed);
    std::vector<int32_t> prompt(promptLength);
    for (int32_t &t : prompt)
      t = static_cast<int32_t>(rng() % vocab);
    int64_t refRows = 0, testRows = 0;
    const float *a = ref.run(prompt, &refRows);
    const float *b = a ? test.run(prompt, &testRows) : nullptr;
    if (!a || !b)
      return -1;
    if (refRows != testRows || refRows < 1) {
      std::fprintf(stderr, "the artifacts gave %lld and %lld logit rows for %lld tokens\n",
                   (long long)refRows, (long long)testRows, (long long)promptLength);
      return -1;
    }
    using moir::check::Comparison;
    Comparison prefill = moir::check::compare(b, a, refRows * vocab);
    bool ok = prefill.within(tolerance);
    nonFinite = prefill.nonFinite != 0;
    std::printf("seed %llu: prefill (%lld tokens): %s\n", (unsigned long long)drawSeed,
                (long long)refRows, prefill.describe(tolerance, vocab).c_str());
    Comparison decode;
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
        return -1;
      decode.merge(moir::check::compare(rb, ra, vocab));
      refLast.assign(ra, ra + vocab);
      testLast.assign(rb, rb + vocab);
    }
    // --steps 0 asks for no decode check.
    if (steps > 0) {
      ok &= decode.within(tolerance);
      nonFinite |= decode.nonFinite != 0;
      std::printf("decode (%lld steps): worst %s; same greedy token %lld of %lld\n",
                  (long long)steps, decode.describe(tolerance, vocab).c_str(),
                  (long long)sameArgmax, (long long)steps);
    }
    return ok ? 0 : 1;
  };
  // A model with discrete decisions (an expert choice) meets, now and then, a
  // prompt whose scores nearly tie, and a last-bit difference flips the choice:
  // a 1e-3 difference that says nothing about the kernels. --redraws N draws a
  // new prompt after such a failure, up to N times; every draw's seed and
  // result is printed, and a NaN or an infinity is never redrawn. A systematic
  // error fails every draw.
  bool ok = false;
  for (int64_t draw = 0; draw <= redraws; ++draw) {
    bool nonFinite = false;
    int result = compareOnce(seed + static_cast<uint64_t>(draw) * 0x9e3779b97f4a7c15ull,
                             nonFinite);
    if (result < 0)
      return 1;
    ok = result == 0;
    if (ok || nonFinite)
      break;
    if (draw < redraws)
      std::printf("redraw %lld of %lld: a new prompt (an expert choice may nearly tie on "
                  "this one)\n", (long long)draw + 1, (long long)redraws);
  }
  return ok ? 0 : 1;
}
