// Token sampling: greedy, temperature, top-k, top-p, seeded.
#include "status.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

using moir::rt::fail;

namespace {

// splitmix64: small, fast, good enough to sample tokens reproducibly.
uint64_t next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double uniform(uint64_t *state) { return (next(state) >> 11) * (1.0 / 9007199254740992.0); }

} // namespace

extern "C" void moir_sampling_init(const moir_sampling *params, uint64_t *state) {
  *state = params ? params->seed : 0;
}

extern "C" moir_status moir_sample(const float *logits, int64_t vocab,
                                   const moir_sampling *params, uint64_t *state,
                                   int32_t *token) {
  if (!logits || vocab <= 0 || !token)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_sample: needs logits, vocab > 0 and an output");
  float temperature = params ? params->temperature : 0.0f;
  if (!(temperature >= 0) || std::isinf(temperature))
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                "moir_sample: temperature must be finite and >= 0, not " +
                    std::to_string(temperature));
  // NaN or +inf logits mean a broken model output; they would also break
  // the ordering below. -inf is a masked token: probability 0.
  int64_t best = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    float logit = logits[i];
    if (std::isnan(logit) || logit == INFINITY)
      return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_sample: logit " + std::to_string(i) +
                                                   " is " + (std::isnan(logit) ? "nan" : "+inf") +
                                                   " (the model's output is not finite)");
    if (logit != -INFINITY && (best < 0 || logit > logits[best]))
      best = i;
  }
  if (best < 0)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_sample: every logit is -inf (nothing to draw)");
  if (temperature == 0.0f || !state) {
    *token = static_cast<int32_t>(best);
    return moir::rt::ok();
  }
  // Most likely first; equal logits in token order, like the argmax above,
  // so top-k and top-p cut ties the same way on every standard library.
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  int64_t keep = vocab;
  if (params->top_k > 0)
    keep = std::min<int64_t>(keep, params->top_k);
  std::vector<double> p(keep);
  double maxLogit = logits[order[0]], sum = 0;
  for (int64_t i = 0; i < keep; ++i)
    sum += p[i] = std::exp((logits[order[i]] - maxLogit) / temperature);
  float topP = params->top_p > 0 && params->top_p < 1 ? params->top_p : 1.0f;
  double mass = 0;
  int64_t cut = keep;
  for (int64_t i = 0; i < keep; ++i) {
    mass += p[i] / sum;
    if (mass >= topP) {
      cut = i + 1;
      break;
    }
  }
  // Tokens of probability 0 (-inf logits, or exp underflow) stay out: the
  // draw below ends on the last kept token when rounding leaves r > 0.
  while (cut > 1 && p[cut - 1] == 0)
    --cut;
  double total = std::accumulate(p.begin(), p.begin() + cut, 0.0);
  double r = uniform(state) * total;
  for (int64_t i = 0; i < cut; ++i) {
    r -= p[i];
    if (r <= 0 || i == cut - 1) {
      *token = order[i];
      return moir::rt::ok();
    }
  }
  *token = order[0];
  return moir::rt::ok();
}
