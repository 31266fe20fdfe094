// The runtime's fork/join (the __kmpc_* entry points compiled code calls):
// a team splits a loop's iterations, barriers hold the team together, and
// parallel regions nested at any depth run on the thread that meets them.
// Three levels deep is what Halide emits for a schedule with three nested
// parallel loops (the Mullapudi2016 autoscheduler's experts kernel); the
// third level used to wait for the pool its own team held. A region with an
// if clause (__kmpc_fork_call_if) forks when its condition holds, else runs
// on the caller alone. Dynamic loops (__kmpc_dispatch_*) give every
// iteration to exactly one thread, whatever the bounds and step, two in one
// region and loops in nested regions included, and a thread that starts
// late has iterations of its share taken by the others.
//
//   moir_parallel_test
#include <atomic>
#include <cstdarg>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <thread>

extern "C" {
using Microtask = void (*)(int32_t *, int32_t *, ...);
void __kmpc_fork_call(void *, int32_t, Microtask, ...);
void __kmpc_for_static_init_4(void *, int32_t, int32_t, int32_t *, int32_t *, int32_t *,
                              int32_t *, int32_t, int32_t);
void __kmpc_barrier(void *, int32_t);
void __kmpc_fork_call_if(void *, int32_t, Microtask, int32_t, void *);
void __kmpc_dispatch_init_4(void *, int32_t, int32_t, int32_t, int32_t, int32_t, int32_t);
int32_t __kmpc_dispatch_next_4(void *, int32_t, int32_t *, int32_t *, int32_t *, int32_t *);
void __kmpc_dispatch_init_8u(void *, int32_t, int32_t, uint64_t, uint64_t, int64_t, int64_t);
int32_t __kmpc_dispatch_next_8u(void *, int32_t, int32_t *, uint64_t *, uint64_t *, int64_t *);
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

/// Records which threads ran a share of a region and how many iterations
/// each got (the aggregate LLVM passes __kmpc_fork_call_if).
struct Shares {
  std::atomic<int32_t> threadsSeen{0}, iterations{0};
  std::atomic<bool> callerOnly{true};
  std::thread::id caller;
};

void shareBody(int32_t *gtid, int32_t *btid, ...) {
  va_list ap;
  va_start(ap, btid);
  auto *shares = static_cast<Shares *>(va_arg(ap, void *));
  va_end(ap);
  int32_t last = 0, lo = 0, hi = kTrips - 1, stride = 1;
  __kmpc_for_static_init_4(nullptr, *gtid, 34, &last, &lo, &hi, &stride, 1, 1);
  shares->threadsSeen.fetch_add(1);
  if (std::this_thread::get_id() != shares->caller)
    shares->callerOnly = false;
  for (int32_t i = lo; i <= hi; ++i)
    shares->iterations.fetch_add(1);
}

/// A dynamic loop's record: how often each iteration ran, how many each
/// thread ran, whether the last chunk was flagged once.
struct Coverage {
  static constexpr int32_t kIterations = 1000;
  std::atomic<int32_t> ran[kIterations];
  std::atomic<int32_t> byThread[2];
  std::atomic<int32_t> lastFlags{0};
  /// Thread 0 starts only once the worker has taken an iteration of
  /// thread 0's share (stolen it).
  bool holdThread0 = false;
  Coverage() {
    for (auto &r : ran)
      r = 0;
    byThread[0] = byThread[1] = 0;
  }
};


/// Iterations [0, kIterations) as an unsigned 64-bit loop of step 1, then
/// (in the same region, after the first loop's barrier) 20 down to 1 as a
/// signed 32-bit loop of step -1 into ran[kIterations - 20 ...].
void dynamicBody(int32_t *gtid, int32_t *btid, ...) {
  va_list ap;
  va_start(ap, btid);
  auto *c = static_cast<Coverage *>(va_arg(ap, void *));
  va_end(ap);
  if (*gtid == 0 && c->holdThread0) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (c->byThread[1].load() <= Coverage::kIterations / 2 &&
           std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
  }
  int32_t last = 0;
  uint64_t lo = 0, hi = 0;
  int64_t stride = 0;
  __kmpc_dispatch_init_8u(nullptr, *gtid, 35, 0, Coverage::kIterations - 1, 1, 1);
  while (__kmpc_dispatch_next_8u(nullptr, *gtid, &last, &lo, &hi, &stride)) {
    for (uint64_t i = lo; i <= hi; i += static_cast<uint64_t>(stride)) {
      c->ran[i].fetch_add(1);
      c->byThread[*gtid & 1].fetch_add(1);
    }
    if (last)
      c->lastFlags.fetch_add(1);
  }
  __kmpc_barrier(nullptr, *gtid);
  int32_t lo4 = 0, hi4 = 0, stride4 = 0;
  __kmpc_dispatch_init_4(nullptr, *gtid, 36, 20, 1, -1, 1);
  while (__kmpc_dispatch_next_4(nullptr, *gtid, &last, &lo4, &hi4, &stride4))
    for (int32_t i = lo4; i >= hi4; i += stride4)
      c->ran[Coverage::kIterations - i].fetch_add(1);
  __kmpc_barrier(nullptr, *gtid);
}

/// A dynamic loop of 8 iterations whose body runs a nested region (on
/// the thread alone) with a dynamic loop of its own over 10: the nested
/// loop must not disturb the outer one's state.
struct Nested {
  std::atomic<int32_t> outer[8];
  std::atomic<int32_t> inner{0};
  Nested() {
    for (auto &o : outer)
      o = 0;
  }
};

/// fn(i) for i in [0, count) of a dynamic loop (step 1), then the barrier.
template <typename Fn> void dynamicLoop(int32_t gtid, uint64_t count, Fn fn) {
  int32_t last = 0;
  uint64_t lo = 0, hi = 0;
  int64_t stride = 0;
  __kmpc_dispatch_init_8u(nullptr, gtid, 35, 0, count - 1, 1, 1);
  while (__kmpc_dispatch_next_8u(nullptr, gtid, &last, &lo, &hi, &stride))
    for (uint64_t i = lo; i <= hi; ++i)
      fn(i);
  __kmpc_barrier(nullptr, gtid);
}

Nested *nestedArg(va_list ap) { return static_cast<Nested *>(va_arg(ap, void *)); }

void innerBody(int32_t *gtid, int32_t *btid, ...) {
  va_list ap;
  va_start(ap, btid);
  Nested *n = nestedArg(ap);
  va_end(ap);
  dynamicLoop(*gtid, 10, [&](uint64_t) { n->inner.fetch_add(1); });
}

void outerBody(int32_t *gtid, int32_t *btid, ...) {
  va_list ap;
  va_start(ap, btid);
  Nested *n = nestedArg(ap);
  va_end(ap);
  dynamicLoop(*gtid, 8, [&](uint64_t i) {
    n->outer[i].fetch_add(1);
    __kmpc_fork_call(nullptr, 1, innerBody, n);
  });
}

/// Every iteration of both loops ran once (the second loop's 20 on top of
/// the first's last 20), the last chunk flagged once.
bool coveredOnce(const Coverage &c) {
  for (int32_t i = 0; i < Coverage::kIterations; ++i)
    if (c.ran[i].load() != (i >= Coverage::kIterations - 20 ? 2 : 1))
      return false;
  return c.lastFlags.load() == 1;
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
  // An if clause: true forks the team, false keeps the region on the caller.
  for (int32_t cond : {1, 0}) {
    Shares shares;
    shares.caller = std::this_thread::get_id();
    __kmpc_fork_call_if(nullptr, 1, shareBody, cond, &shares);
    check(shares.iterations.load() == kTrips, "an if region's iterations ran once");
    check(shares.threadsSeen.load() == (cond ? 2 : 1),
          cond ? "if(true) forked the team of 2" : "if(false) ran one share");
    check(shares.callerOnly.load() == !cond,
          cond ? "if(true) gave the worker a share" : "if(false) stayed on the caller");
  }
  // Dynamic loops, forked and alone, many times over (races).
  for (int round = 0; round < 50; ++round)
    for (int32_t cond : {1, 0}) {
      Coverage c;
      __kmpc_fork_call_if(nullptr, 1, dynamicBody, cond, &c);
      check(coveredOnce(c), cond ? "a team's dynamic loops ran every iteration once"
                                 : "a dynamic loop run alone ran every iteration once");
    }
  // Thread 0 starts only after the worker has stolen from its share
  // (else after 10 s, and the check below fails).
  {
    Coverage c;
    c.holdThread0 = true;
    __kmpc_fork_call_if(nullptr, 1, dynamicBody, 1, &c);
    check(coveredOnce(c), "a late thread's dynamic loop ran every iteration once");
    check(c.byThread[1].load() > Coverage::kIterations / 2,
          "the worker took iterations of a late thread's share");
  }
  // Nested dynamic loops, on every thread of the team.
  for (int round = 0; round < 20; ++round) {
    Nested n;
    __kmpc_fork_call(nullptr, 1, outerBody, &n);
    bool once = n.inner.load() == 80;
    for (auto &o : n.outer)
      once = once && o.load() == 1;
    check(once, "a dynamic loop with nested dynamic loops ran every iteration once");
  }
  std::printf("parallel: %s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
