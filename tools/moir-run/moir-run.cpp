//===- moir-run.cpp - run a compiled MoIR model -----------------------------===//
//
// moir-run MODEL.moir --tokens 1,2,3 [-n 32] [--temperature T] [--top-k K]
//          [--top-p P] [--seed S] [--json] [--bandwidth] [--prefill-chunk N]
// moir-run --inspect [--verify] MODEL.moir
//
// Needs only the runtime (no MLIR, no LLVM).
//
//===----------------------------------------------------------------------===//

#include "moir/runtime.h"

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int usage() {
  std::fprintf(stderr,
               "usage: moir-run MODEL.moir --tokens 1,2,3 [-n 32] [--temperature T] "
               "[--top-k K] [--top-p P] [--seed S] [--json] [--bandwidth] "
               "[--prefill-chunk N]\n"
               "       moir-run --inspect [--verify] MODEL.moir\n");
  return 2;
}

/// STREAM-style triad on every hardware thread over buffers far larger than
/// the caches: the machine's achievable memory bandwidth, GB/s.
double measureBandwidth() {
  const size_t n = size_t(1) << 25; // 3 x 128 MiB
  std::vector<float> a(n, 1.0f), b(n, 2.0f), c(n, 0.0f);
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double t0 = now();
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        size_t lo = n * t / threads, hi = n * (t + 1) / threads;
        for (size_t i = lo; i < hi; ++i)
          c[i] = a[i] + 1.5f * b[i];
      });
    for (std::thread &th : pool)
      th.join();
    double t = now() - t0;
    best = std::max(best, 3.0 * n * sizeof(float) / t / 1e9);
    std::swap(a, c);
  }
  return best;
}

bool parseTokens(const char *text, std::vector<int32_t> &out) {
  std::string s(text);
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(',', start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    char *rest = nullptr;
    long v = std::strtol(item.c_str(), &rest, 10);
    if (item.empty() || *rest)
      return false;
    out.push_back(static_cast<int32_t>(v));
    if (end == std::string::npos)
      break;
    start = end + 1;
  }
  return !out.empty();
}

} // namespace

int main(int argc, char **argv) {
  const char *path = nullptr;
  std::vector<int32_t> prompt;
  long steps = 32, chunk = 0;
  bool json = false, inspect = false, bandwidth = false, verify = false;
  moir_sampling sampling{0.0f, 0, 1.0f, 0};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
    const char *v = nullptr;
    if (a == "--inspect") inspect = true;
    else if (a == "--verify") verify = true;
    else if (a == "--json") json = true;
    else if (a == "--bandwidth") bandwidth = true;
    else if (a == "--tokens") { if (!(v = value()) || !parseTokens(v, prompt)) return usage(); }
    else if (a == "-n") { if (!(v = value())) return usage(); steps = std::atol(v); }
    else if (a == "--prefill-chunk") { if (!(v = value())) return usage(); chunk = std::atol(v); }
    else if (a == "--temperature") { if (!(v = value())) return usage(); sampling.temperature = std::atof(v); }
    else if (a == "--top-k") { if (!(v = value())) return usage(); sampling.top_k = std::atoi(v); }
    else if (a == "--top-p") { if (!(v = value())) return usage(); sampling.top_p = std::atof(v); }
    else if (a == "--seed") { if (!(v = value())) return usage(); sampling.seed = std::strtoull(v, nullptr, 10); }
    else if (!path && a[0] != '-') path = argv[i];
    else return usage();
  }
  if (!path)
    return usage();
  moir_model *model = nullptr;
  // Inspection loads no code: it works for a GPU artifact on a machine
  // without that GPU.
  if ((inspect ? moir_model_open_for_inspection(path, &model) : moir_model_open(path, &model)) !=
      MOIR_OK) {
    std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
    return 1;
  }
  if (inspect) {
    std::fputs(moir_model_manifest(model), stdout);
    std::printf("weights: %.1f MB mapped\n", moir_model_weight_bytes(model) / 1e6);
    if (verify) {
      if (moir_model_verify_weights(model) != MOIR_OK) {
        std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
        moir_model_close(model);
        return 1;
      }
      std::printf("weights checksum: ok\n");
    }
    moir_model_close(model);
    return 0;
  }
  if (prompt.empty() || steps < 0 || chunk < 0)
    return usage();
  moir_session *session = nullptr;
  if (moir_session_create(model, 0, &session) != MOIR_OK) {
    std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
    return 1;
  }
  uint64_t rng;
  moir_sampling_init(&sampling, &rng);
  int64_t vocab = moir_model_vocab_size(model);
  std::vector<int32_t> generated;
  // Bandwidth is bimodal on some machines: measure it before and after.
  double gbpsBefore = bandwidth ? measureBandwidth() : 0.0;
  double t0 = now();
  // A long prompt may run in chunks (--prefill-chunk): each appends to the
  // cache, as a server prefilling a long context does.
  size_t step = chunk > 0 ? static_cast<size_t>(chunk) : prompt.size();
  for (size_t at = 0; at < prompt.size(); at += step) {
    size_t n = std::min(step, prompt.size() - at);
    if (moir_session_run(session, prompt.data() + at, static_cast<int64_t>(n)) != MOIR_OK) {
      std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
      return 1;
    }
  }
  double prefillTime = now() - t0;
  double t1 = now();
  for (long i = 0; i < steps; ++i) {
    int32_t next;
    if (moir_sample(moir_session_logits(session), vocab, &sampling, &rng, &next) != MOIR_OK) {
      std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
      return 1;
    }
    generated.push_back(next);
    if (i + 1 == steps)
      break;
    if (moir_session_run(session, &next, 1) != MOIR_OK) {
      std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
      return 1;
    }
  }
  double decodeTime = now() - t1;
  double prefillRate = prompt.size() / prefillTime;
  double decodeRate = steps > 1 ? (steps - 1) / decodeTime : 0.0;
  double gbpsAfter = bandwidth ? measureBandwidth() : 0.0;
  // The higher of the two makes the bound strict.
  double gbps = std::max(gbpsBefore, gbpsAfter);
  // Decode must read the weights a step uses (the compiler counted them:
  // dense weights, the selected experts, one embedding row); KV-cache reads
  // are small at these lengths and left out, which makes the bound generous.
  uint64_t stepBytes = moir_model_decode_weight_bytes(model);
  double boundRate = gbps > 0 && stepBytes ? gbps * 1e9 / stepBytes : 0.0;
  if (json) {
    std::printf("{\"tokens\": [");
    for (size_t i = 0; i < generated.size(); ++i)
      std::printf("%s%d", i ? ", " : "", generated[i]);
    std::printf("], \"prefill_tokens\": %zu, \"prefill_tokens_per_s\": %.3f, "
                "\"decode_tokens_per_s\": %.3f, \"matmul_flops_per_token\": %llu, "
                "\"decode_weight_bytes_per_token\": %llu, \"decode_weight_gb_per_s\": %.2f",
                prompt.size(), prefillRate, decodeRate,
                (unsigned long long)moir_model_decode_flops(model), (unsigned long long)stepBytes,
                stepBytes * decodeRate / 1e9);
    if (bandwidth)
      std::printf(", \"bandwidth_gb_per_s_before\": %.2f, \"bandwidth_gb_per_s_after\": %.2f",
                  gbpsBefore, gbpsAfter);
    if (bandwidth)
      std::printf(", \"bandwidth_gb_per_s\": %.2f, "
                  "\"decode_bound_tokens_per_s\": %.2f, "
                  "\"decode_fraction_of_bandwidth_bound\": %.4f",
                  gbps, boundRate,
                  boundRate > 0 ? decodeRate / boundRate : 0.0);
    std::printf("}\n");
  } else {
    std::printf("generated:");
    for (int32_t t : generated)
      std::printf(" %d", t);
    std::printf("\nprefill: %zu tokens, %.2f tokens/s (%.1f GFLOP/s in weight matmuls)\n"
                "decode: %ld tokens, %.2f tokens/s\n",
                prompt.size(), prefillRate, prefillRate * moir_model_decode_flops(model) / 1e9,
                steps, decodeRate);
    if (bandwidth)
      std::printf("bandwidth: %.1f GB/s before, %.1f GB/s after; a decode step reads %.1f MB "
                  "of weights, so at most %.1f tokens/s; reached %.1f%% of that bound\n",
                  gbpsBefore, gbpsAfter, stepBytes / 1e6, boundRate,
                  boundRate > 0 ? 100.0 * decodeRate / boundRate : 0.0);
  }
  moir_session_destroy(session);
  moir_model_close(model);
  return 0;
}
