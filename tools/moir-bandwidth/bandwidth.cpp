//===- bandwidth.cpp - STREAM-style memory bandwidth probe ------------------===//

#include "bandwidth.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace {

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

} // namespace

double moir::measureBandwidth() {
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
