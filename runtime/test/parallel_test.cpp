// The runtime's fork/join (the __kmpc_* entry points compiled code calls):
// a team splits a loop's iterations, barriers hold the team together, and
// parallel regions nested at any depth run on the thread that meets them.
// Three levels deep is what Halide emits for a schedule with three nested
// parallel loops (the Mullapudi2016 autoscheduler's experts kernel); the
// third level used to wait for the pool its own team held.
//
//   moir_parallel_test
#include <atomic>
#include <cstdarg>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

extern "C" {
using Microtask = void (*)(int32_t *, int32_t *, ...);
void __kmpc_fork_call(void *, int32_t, Microtask, ...);
void __kmpc_for_static_init_4(void *, int32_t, int32_t, int32_t *, int32_t *, int32_t *,
                              int32_t *, int32_t, int32_t);
void __kmpc_barrier(void *, int32_t);
}

namespace {

constexpr int32_t kTrips = 6;
std::atomic<int64_t> leaves{0};
int failures = 0;

void check(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

/// A parallel loop of kTrips iterations at `depth`; each iteration runs the
/// next depth's loop, the last depth counts.
void loop(int depth);

// Variadic, as the runtime calls a microtask (UBSan checks the type).
void body(int32_t *gtid, int32_t *btid, ...) {
  va_list ap;
  va_start(ap, btid);
  int depth = static_cast<int>(reinterpret_cast<intptr_t>(va_arg(ap, void *)));
  va_end(ap);
  int32_t last = 0, lo = 0, hi = kTrips - 1, stride = 1;
  __kmpc_for_static_init_4(nullptr, *gtid, 34, &last, &lo, &hi, &stride, 1, 1);
  for (int32_t i = lo; i <= hi; ++i) {
    if (depth == 3)
      leaves.fetch_add(1);
    else
      loop(depth + 1);
  }
  __kmpc_barrier(nullptr, *gtid);
}

void loop(int depth) {
  __kmpc_fork_call(nullptr, 1, body,
                   reinterpret_cast<void *>(static_cast<intptr_t>(depth)));
}

} // namespace

int main() {
  setenv("MOIR_NUM_THREADS", "2", 1);
  // A hang is the failure this test is for: fail it instead of waiting.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::fprintf(stderr, "FAIL: nested parallel regions did not finish in 60 s\n");
    std::_Exit(1);
  }).detach();
  for (int round = 0; round < 20; ++round) {
    leaves = 0;
    loop(1);
    check(leaves.load() == kTrips * kTrips * kTrips, "every innermost iteration ran once");
  }
  // A flat loop still splits over the team.
  leaves = 0;
  loop(3);
  check(leaves.load() == kTrips, "a flat loop's iterations ran once");
  std::printf("parallel: %s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
