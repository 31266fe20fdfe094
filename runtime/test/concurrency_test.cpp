// Sessions at once: N threads, each driving M sessions of one model in turn
// (a step of each, round robin), must produce exactly what each prompt
// produces alone: the same greedy tokens and bit-identical logits. Run on
// a compiled artifact by test/e2e/runtime-concurrency.test, also under
// ThreadSanitizer and AddressSanitizer builds of the runtime.
//
//   moir_concurrency_test MODEL.moir THREADS SESSIONS STEPS
#include "moir/runtime.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Result {
  std::vector<int32_t> tokens;
  std::vector<float> logits; // of the last step
  std::string error;
};

/// A prompt per (thread, session): distinct, deterministic.
std::vector<int32_t> promptFor(int index, int64_t vocab) {
  std::vector<int32_t> p;
  for (int i = 0; i < 3 + index % 4; ++i)
    p.push_back(static_cast<int32_t>((1 + 7 * index + 13 * i) % vocab));
  return p;
}

int32_t argmax(const float *logits, int64_t vocab) {
  int32_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best])
      best = static_cast<int32_t>(i);
  return best;
}

/// Runs `count` sessions from `first` on, a step of each in turn.
void generate(moir_model *model, int first, int count, int steps, std::vector<Result> &out) {
  int64_t vocab = moir_model_vocab_size(model);
  std::vector<moir_session *> sessions(count, nullptr);
  std::vector<int32_t> next(count);
  for (int s = 0; s < count; ++s) {
    Result &r = out[first + s];
    if (moir_session_create(model, 0, &sessions[s]) != MOIR_OK) {
      r.error = moir_last_error();
      continue;
    }
    std::vector<int32_t> prompt = promptFor(first + s, vocab);
    if (moir_session_run(sessions[s], prompt.data(), static_cast<int64_t>(prompt.size())) != MOIR_OK)
      r.error = moir_last_error();
  }
  for (int step = 0; step < steps; ++step) {
    for (int s = 0; s < count; ++s) {
      Result &r = out[first + s];
      if (!r.error.empty())
        continue;
      const float *logits = moir_session_logits(sessions[s]);
      next[s] = argmax(logits, vocab);
      r.tokens.push_back(next[s]);
      if (step + 1 == steps) {
        r.logits.assign(logits, logits + vocab);
        continue;
      }
      if (moir_session_run(sessions[s], &next[s], 1) != MOIR_OK)
        r.error = moir_last_error();
    }
  }
  for (moir_session *s : sessions)
    moir_session_destroy(s);
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: moir_concurrency_test MODEL.moir THREADS SESSIONS STEPS\n");
    return 2;
  }
  int threads = std::atoi(argv[2]), perThread = std::atoi(argv[3]), steps = std::atoi(argv[4]);
  if (threads < 1 || perThread < 1 || steps < 1) {
    std::fprintf(stderr, "THREADS, SESSIONS and STEPS must be positive\n");
    return 2;
  }
  moir_model *model = nullptr;
  if (moir_model_open(argv[1], &model) != MOIR_OK) {
    std::fprintf(stderr, "error: %s\n", moir_last_error());
    return 1;
  }
  int total = threads * perThread;
  // One at a time: the reference.
  std::vector<Result> alone(total), together(total);
  for (int i = 0; i < total; ++i)
    generate(model, i, 1, steps, alone);
  // All at once.
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back(
        [&, t] { generate(model, t * perThread, perThread, steps, together); });
  for (std::thread &t : pool)
    t.join();
  int failures = 0, compared = 0;
  for (int i = 0; i < total; ++i) {
    const Result &a = alone[i], &b = together[i];
    if (!a.error.empty() || !b.error.empty()) {
      std::fprintf(stderr, "session %d: error: %s%s\n", i, a.error.c_str(), b.error.c_str());
      ++failures;
      continue;
    }
    bool finite = true;
    for (float v : a.logits)
      finite = finite && v == v && v - v == 0;
    if (!finite || a.tokens != b.tokens || a.logits.size() != b.logits.size() ||
        std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)) != 0) {
      std::fprintf(stderr, "session %d: differs when run alongside others%s\n", i,
                   finite ? "" : " (non-finite logits)");
      ++failures;
      continue;
    }
    ++compared;
  }
  moir_model_close(model);
  std::printf("%d threads x %d sessions x %d steps: %d identical to one at a time, %d differ\n",
              threads, perThread, steps, compared, failures);
  return failures || compared != total ? 1 : 0;
}
