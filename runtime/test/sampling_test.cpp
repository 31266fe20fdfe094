// Checks that moir_sample draws from the distribution runtime.h promises:
// softmax(logits / temperature), cut to the k most likely tokens, then to the
// smallest nucleus whose probability reaches top_p, renormalized.
//
// Each case draws kDraws tokens from fixed logits with a fixed seed and
// compares the counts with the exact probabilities by Pearson's chi-square
// test. A case fails when its p-value is below kAlpha = 1e-6, so a correct
// sampler fails a case with probability 1e-6 per seed (under 1e-4 for the
// whole file); the seeds are fixed, so the outcome is deterministic. The same
// statistic must reject deliberately wrong expectations (temperature off by
// 10%, top-k or the nucleus off by one token, 1% of the mass moved between
// two tokens, uniform), so a pass says something. Tokens of probability 0 must
// never be drawn, whatever the statistic says.
#include "moir/runtime.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace {

constexpr double kAlpha = 1e-6;
constexpr long kDraws = 100000;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int failures = 0;

void expect(bool ok, const std::string &what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

/// Q(a, x) = Gamma(a, x) / Gamma(a), the regularized upper incomplete gamma
/// function; a chi-square statistic s with d degrees of freedom has p-value
/// Q(d / 2, s / 2). A power series for small x, a continued fraction
/// (evaluated by Lentz's method) for large x.
double upperGammaQ(double a, double x) {
  if (x <= 0)
    return 1;
  double logPrefix = a * std::log(x) - x - std::lgamma(a);
  if (x < a + 1) {
    double term = 1 / a, sum = term;
    for (int n = 1; n < 10000 && term > sum * 1e-17; ++n)
      sum += term *= x / (a + n);
    return std::max(0.0, 1 - sum * std::exp(logPrefix));
  }
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 10000; ++i) {
    double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    d = 1 / (std::fabs(d) < tiny ? tiny : d);
    c = b + an / c;
    if (std::fabs(c) < tiny)
      c = tiny;
    h *= d * c;
    if (std::fabs(d * c - 1) < 1e-16)
      break;
  }
  return std::exp(logPrefix) * h;
}

/// The exact distribution the sampler promises, computed on its own in long
/// double. `margin` receives how close the nucleus cut came to top_p (a case
/// where rounding could decide the cut is ill-posed).
std::vector<double> expectedProbabilities(const std::vector<float> &logits, double temperature,
                                          int topK, double topP, double *margin = nullptr) {
  size_t n = logits.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  size_t keep = topK > 0 ? std::min<size_t>(n, topK) : n;
  std::vector<long double> weight(n, 0);
  long double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    size_t id = order[i];
    if (logits[id] == kNegInf)
      continue;
    weight[id] = std::exp(((long double)logits[id] - logits[order[0]]) / temperature);
    sum += weight[id];
  }
  size_t cut = keep;
  if (margin)
    *margin = 1;
  if (topP > 0 && topP < 1) {
    long double mass = 0;
    for (size_t i = 0; i < keep; ++i) {
      long double before = mass;
      mass += weight[order[i]] / sum;
      if (mass >= topP) {
        cut = i + 1;
        if (margin)
          *margin = (double)std::min(mass - topP, topP - before);
        break;
      }
    }
  }
  long double total = 0;
  for (size_t i = 0; i < cut; ++i)
    total += weight[order[i]];
  std::vector<double> p(n, 0);
  for (size_t i = 0; i < cut; ++i)
    p[order[i]] = (double)(weight[order[i]] / total);
  return p;
}

std::vector<long> draw(const std::vector<float> &logits, const moir_sampling &params,
                       long draws) {
  std::vector<long> counts(logits.size(), 0);
  uint64_t state;
  moir_sampling_init(&params, &state);
  for (long i = 0; i < draws; ++i) {
    int32_t token = -1;
    if (moir_sample(logits.data(), (int64_t)logits.size(), &params, &state, &token) != MOIR_OK ||
        token < 0 || token >= (int32_t)logits.size()) {
      expect(false, std::string("moir_sample failed or drew out of range: ") + moir_last_error());
      return counts;
    }
    ++counts[token];
  }
  return counts;
}

struct Verdict {
  bool pass;
  std::string why;
};

/// Pearson's chi-square test of the counts against the probabilities. Fails,
/// rather than passes, when there is nothing to test: no draws, fewer than
/// two tokens of positive probability (check those exactly instead), or an
/// expected count under 5 (where the chi-square approximation breaks down).
Verdict chiSquare(const std::vector<long> &counts, const std::vector<double> &expected) {
  if (counts.empty() || counts.size() != expected.size())
    return {false, "nothing to compare"};
  long n = std::accumulate(counts.begin(), counts.end(), 0L);
  if (n == 0)
    return {false, "no draws to compare"};
  double statistic = 0;
  int bins = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (expected[i] == 0) {
      if (counts[i])
        return {false, "token " + std::to_string(i) + " drawn " + std::to_string(counts[i]) +
                           " times although its probability is 0"};
      continue;
    }
    double e = n * expected[i];
    if (e < 5)
      return {false, "token " + std::to_string(i) + " expects " + std::to_string(e) +
                         " draws: too few for the chi-square test"};
    statistic += (counts[i] - e) * (counts[i] - e) / e;
    ++bins;
  }
  if (bins < 2)
    return {false, "fewer than two tokens to compare"};
  double pValue = upperGammaQ((bins - 1) / 2.0, statistic / 2);
  char text[160];
  std::snprintf(text, sizeof text, "chi-square %.4f with %d degrees of freedom, p-value %.3g",
                statistic, bins - 1, pValue);
  return {pValue >= kAlpha, text};
}

moir_sampling params(float temperature, int32_t topK, float topP, uint64_t seed) {
  moir_sampling p;
  p.temperature = temperature;
  p.top_k = topK;
  p.top_p = topP;
  p.seed = seed;
  return p;
}

// Token ids deliberately out of logit order, so sorting matters.
const std::vector<float> kLogits = {0.3f, 2.0f, -1.0f, 1.2f, 0.0f, 1.5f, -0.5f, 1.0f, -2.0f, 0.5f};

struct Case {
  const char *name;
  std::vector<float> logits;
  float temperature;
  int32_t topK;
  float topP;
};

const Case kCases[] = {
    {"softmax, temperature 1", kLogits, 1.0f, 0, 1.0f},
    {"temperature 0.5", kLogits, 0.5f, 0, 1.0f},
    {"temperature 2", kLogits, 2.0f, 0, 1.0f},
    {"top-k 4", kLogits, 1.0f, 4, 1.0f},
    {"top-p 0.8", kLogits, 1.0f, 0, 0.8f},
    {"top-k 6, top-p 0.88, temperature 0.8", kLogits, 0.8f, 6, 0.88f},
    {"top-k 5, top-p 0.9, temperature 1.5", kLogits, 1.5f, 5, 0.9f},
    {"top-k beyond the vocabulary", kLogits, 1.3f, 20, 1.0f},
    {"masked (-inf) tokens, top-p 0.95", {0.2f, kNegInf, 1.1f, 0.7f, kNegInf, -0.3f, 0.9f},
     0.9f, 0, 0.95f},
    // Ties at both cuts: the lower id goes first.
    {"ties at the top-k cut", {0.5f, 1.0f, 1.0f, 0.2f, 1.0f, 0.8f}, 1.0f, 2, 1.0f},
    {"ties at the top-p cut", {0.7f, 0.7f, 0.7f, 0.7f, 0.1f}, 1.0f, 0, 0.6f},
};

void checkDistributions() {
  uint64_t seed = 1000;
  for (const Case &c : kCases) {
    double margin = 0;
    std::vector<double> p = expectedProbabilities(c.logits, c.temperature, c.topK, c.topP, &margin);
    // A cut this close to top_p could go either way in the sampler's doubles.
    expect(margin > 1e-6, std::string(c.name) + ": top_p sits on a cumulative probability");
    std::vector<long> counts = draw(c.logits, params(c.temperature, c.topK, c.topP, ++seed), kDraws);
    Verdict v = chiSquare(counts, p);
    expect(v.pass, std::string(c.name) + ": " + v.why);
    std::printf("%-40s %s\n", c.name, v.why.c_str());
  }
}

/// The statistic rejects distributions that are wrong in the ways a sampler
/// could be: otherwise the passes above would mean nothing.
void checkStatisticRejectsWrongDistributions() {
  struct Wrong {
    const char *name;
    Case sampled;
    std::vector<double> expected;
  };
  std::vector<double> softmax = expectedProbabilities(kLogits, 1.0, 0, 1.0);
  std::vector<double> moved = softmax; // 1% of the mass from token 1 to token 3
  moved[1] -= 0.01;
  moved[3] += 0.01;
  std::vector<double> uniform(kLogits.size(), 1.0 / kLogits.size());
  const Wrong wrongs[] = {
      {"temperature 1.1 for 1", kCases[0], expectedProbabilities(kLogits, 1.1, 0, 1.0)},
      {"1% of the mass moved", kCases[0], moved},
      {"uniform", kCases[0], uniform},
      {"top-k 5 for 4", kCases[3], expectedProbabilities(kLogits, 1.0, 5, 1.0)},
      {"top-k 3 for 4", kCases[3], expectedProbabilities(kLogits, 1.0, 3, 1.0)},
      {"nucleus one token larger", kCases[4], expectedProbabilities(kLogits, 1.0, 0, 0.9)},
      {"nucleus one token smaller", kCases[4], expectedProbabilities(kLogits, 1.0, 0, 0.7)},
      {"top-p applied before top-k", kCases[5], expectedProbabilities(kLogits, 0.8, 0, 0.88)},
      {"ties cut by the higher id", kCases[9], {0, 0.5, 0, 0, 0.5, 0}},
  };
  uint64_t seed = 2000;
  for (const Wrong &w : wrongs) {
    const Case &c = w.sampled;
    std::vector<double> right = expectedProbabilities(c.logits, c.temperature, c.topK, c.topP);
    std::vector<long> counts = draw(c.logits, params(c.temperature, c.topK, c.topP, ++seed), kDraws);
    Verdict good = chiSquare(counts, right), bad = chiSquare(counts, w.expected);
    expect(good.pass, std::string(c.name) + " (seed " + std::to_string(seed) + "): " + good.why);
    expect(!bad.pass, std::string("the statistic accepts a wrong distribution (") + w.name +
                          "): " + bad.why);
  }
  // Nothing to compare is a failure, never a pass.
  expect(!chiSquare({}, {}).pass, "an empty comparison passes");
  expect(!chiSquare({0, 0, 0}, {0.2, 0.3, 0.5}).pass, "a comparison without draws passes");
  expect(!chiSquare({500, 0}, {1.0, 0.0}).pass, "a one-token comparison passes");
  expect(!chiSquare({3, 997}, {0.001, 0.999}).pass, "a comparison with 1 expected draw passes");
}

/// The p-value against closed forms: Q(1, x/2) = exp(-x/2) (2 degrees of
/// freedom), erfc(sqrt(x/2)) (1), exp(-x/2)(1 + x/2) (4).
void checkPValues() {
  for (double x : {0.1, 1.0, 3.84, 10.0, 30.0, 60.0}) {
    auto near = [](double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(b, 1e-300); };
    expect(near(upperGammaQ(1.0, x / 2), std::exp(-x / 2)), "p-value, 2 degrees, x=" + std::to_string(x));
    expect(near(upperGammaQ(0.5, x / 2), std::erfc(std::sqrt(x / 2))),
           "p-value, 1 degree, x=" + std::to_string(x));
    expect(near(upperGammaQ(2.0, x / 2), std::exp(-x / 2) * (1 + x / 2)),
           "p-value, 4 degrees, x=" + std::to_string(x));
  }
}

int32_t sampleOnce(const std::vector<float> &logits, const moir_sampling *p, uint64_t *state,
                   moir_status *status = nullptr) {
  int32_t token = -1;
  moir_status s = moir_sample(logits.data(), (int64_t)logits.size(), p, state, &token);
  if (status)
    *status = s;
  else
    expect(s == MOIR_OK, std::string("moir_sample failed: ") + moir_last_error());
  return token;
}

/// Cases with one possible token are checked exactly: every draw is it.
void checkSingleTokenCases() {
  const std::vector<std::vector<float>> logitSets = {
      kLogits, {3.0f, -1.0f, 3.0f, 2.9f}, {kNegInf, -5.0f, kNegInf, -5.5f}, {-100.0f}};
  const int32_t argmax[] = {1, 0, 1, 0};
  for (size_t s = 0; s < logitSets.size(); ++s) {
    const std::vector<float> &logits = logitSets[s];
    std::string which = " (logit set " + std::to_string(s) + ")";
    uint64_t state = 0;
    moir_sampling greedy = params(0.0f, 0, 1.0f, 5);
    moir_sampling_init(&greedy, &state);
    expect(sampleOnce(logits, &greedy, &state) == argmax[s], "temperature 0 is the argmax" + which);
    expect(sampleOnce(logits, nullptr, &state) == argmax[s], "no parameters is the argmax" + which);
    moir_sampling warm = params(1.0f, 0, 1.0f, 5);
    expect(sampleOnce(logits, &warm, nullptr) == argmax[s], "no generator state is the argmax" + which);
    const moir_sampling single[] = {params(1.0f, 1, 1.0f, 11), params(1.0f, 0, 0.01f, 12),
                                    params(1e-3f, 0, 1.0f, 13)};
    for (const moir_sampling &p : single) {
      if (s == 1 && p.temperature < 1)
        continue; // tokens 0 and 2 tie: both stay at any temperature
      moir_sampling_init(&p, &state);
      long hits = 0;
      for (int i = 0; i < 10000; ++i)
        hits += sampleOnce(logits, &p, &state) == argmax[s];
      expect(hits == 10000, "top-k 1, top-p 0.01 or temperature 1e-3 draws only the argmax" + which);
    }
  }
}

void checkSeeds() {
  auto sequence = [](uint64_t seed) {
    moir_sampling p = params(1.0f, 0, 1.0f, seed);
    uint64_t state;
    moir_sampling_init(&p, &state);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 200; ++i)
      tokens.push_back(sampleOnce(kLogits, &p, &state));
    return tokens;
  };
  expect(sequence(42) == sequence(42), "one seed repeats its tokens");
  expect(sequence(42) != sequence(43), "two seeds draw different tokens");
}

/// NaN and +inf logits (a broken model output) and bad temperatures are
/// errors; -inf is a masked token, and all -inf is an error.
void checkNonFinite() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Bad {
    std::vector<float> logits;
    float temperature;
    const char *message;
  };
  const Bad bads[] = {
      {{0.5f, nan, 1.0f}, 0.0f, "logit 1 is nan"},   {{0.5f, nan, 1.0f}, 1.0f, "logit 1 is nan"},
      {{nan, nan}, 0.7f, "logit 0 is nan"},          {{0.5f, 1.0f, inf}, 0.0f, "logit 2 is +inf"},
      {{0.5f, 1.0f, inf}, 1.0f, "logit 2 is +inf"},  {{kNegInf, kNegInf}, 0.0f, "every logit is -inf"},
      {{kNegInf, kNegInf}, 1.0f, "every logit is -inf"}, {kLogits, -1.0f, "temperature"},
      {kLogits, nan, "temperature"},                 {kLogits, inf, "temperature"},
  };
  for (const Bad &b : bads) {
    moir_sampling p = params(b.temperature, 0, 1.0f, 3);
    uint64_t state;
    moir_sampling_init(&p, &state);
    moir_status status;
    sampleOnce(b.logits, &p, &state, &status);
    expect(status == MOIR_ERROR_INVALID_ARGUMENT && std::strstr(moir_last_error(), b.message),
           std::string("expected an error naming '") + b.message + "', got " +
               moir_status_name(status) + ": " + moir_last_error());
  }
}

/// splitmix64, the sampler's generator, and its inverse: a state whose next
/// draw is the largest uniform number, 1 - 2^-53.
uint64_t splitmix(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t unshift(uint64_t x, int shift) {
  uint64_t y = x;
  for (int i = 0; i < 64 / shift + 1; ++i)
    y = x ^ (y >> shift);
  return y;
}

uint64_t inverse(uint64_t odd) {
  uint64_t x = odd;
  for (int i = 0; i < 6; ++i)
    x *= 2 - odd * x;
  return x;
}

uint64_t stateBeforeOutput(uint64_t output) {
  uint64_t z = unshift(output, 31) * inverse(0x94d049bb133111ebull);
  z = unshift(z, 27) * inverse(0xbf58476d1ce4e5b9ull);
  return unshift(z, 30) - 0x9e3779b97f4a7c15ull;
}

/// At the top of the uniform range, rounding in the running subtraction can
/// leave a remainder after the last token of positive probability; the draw
/// must not then fall on a masked token behind it.
void checkLargestUniformDrawsNoMaskedToken() {
  uint64_t probe = stateBeforeOutput(~0ull);
  expect(splitmix(&probe) == ~0ull, "the inverse of splitmix64 is wrong");
  uint64_t rng = 99;
  long masked = 0, tried = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    size_t n = 2 + splitmix(&rng) % 7;
    std::vector<float> logits(n + 1);
    for (float &l : logits)
      l = (float)((splitmix(&rng) >> 11) * 0x1p-53 * 6 - 3);
    size_t maskedId = splitmix(&rng) % (n + 1);
    logits[maskedId] = kNegInf;
    moir_sampling p = params(0.5f + (splitmix(&rng) % 16) / 10.0f, 0, 1.0f, 0);
    uint64_t state = stateBeforeOutput(~0ull);
    masked += sampleOnce(logits, &p, &state) == (int32_t)maskedId;
    ++tried;
  }
  expect(tried == 4000 && masked == 0,
         std::to_string(masked) + " of " + std::to_string(tried) +
             " draws at the largest uniform number fell on a masked (-inf) token");
}

} // namespace

int main() {
  checkPValues();
  checkDistributions();
  checkStatisticRejectsWrongDistributions();
  checkSingleTokenCases();
  checkSeeds();
  checkNonFinite();
  checkLargestUniformDrawsNoMaskedToken();
  if (failures) {
    std::fprintf(stderr, "sampling: %d checks failed\n", failures);
    return 1;
  }
  std::printf("sampling: all checks passed\n");
  return 0;
}
