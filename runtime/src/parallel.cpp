// The runtime's thread pool, behind the small part of the OpenMP runtime ABI
// (libomp's __kmpc_* entry points) that MLIR's OpenMP lowering emits for a
// parallel loop: fork a team, split the iterations statically, barrier.
// Compiled code calls these; they are resolved from this library when the
// runtime loads the code, so artifacts need no libomp.
#include "moir/runtime.h"
#include "region_profile.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdlib>
#include <type_traits>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace {

using Microtask = void (*)(int32_t *, int32_t *, ...);

thread_local int32_t threadId = 0;
thread_local bool inTeam = false;
/// Parallel regions this thread runs alone, nested in a team's region:
/// deeper ones stay on it too (a fork from inside would wait for the pool
/// its own team holds).
thread_local int32_t nestedDepth = 0;
/// With MOIR_PROFILE_REGIONS: this thread's barrier waits in the current fork.
thread_local int64_t barrierWaitNs = 0;

/// Runs fn(t) and returns its time less the barrier waits in it (profiling).
template <typename Fn> int64_t timedShare(Fn &fn, int32_t t) {
  barrierWaitNs = 0;
  int64_t start = moir::rt::profileNow();
  fn(t);
  return moir::rt::profileNow() - start - barrierWaitNs;
}

/// One step of a busy wait: tells the core (and, under a hypervisor, the
/// host) that this thread spins.
inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Waits until `ready()`: first pause steps for up to `spinNs` nanoseconds
/// (a fork's hand-off and the serial code between two regions, a decode
/// step's sampling and embedding included, take microseconds to about a
/// millisecond, and a pause reacts within tens of nanoseconds), then
/// `kYields` yields; false if still not ready, for the caller to block.
/// Spinning by time, not by a count: a count of 2048 pauses was 54 us on
/// an AMD Zen 4 (26 ns a pause), after which the yields handed the CPU to
/// any other runnable process for a scheduler slice, so with a background
/// job on the other core each decode step's first region waited 1.9-2.3 ms
/// (bench/RESULTS.md, stop 57). With more threads than CPUs, `spinNs` is
/// 0: a thread that pauses keeps its CPU from the one it waits for (4
/// threads on 2 CPUs: 1.7 us a fork with yields, 35-55 us with pauses).
template <typename Ready> bool spinUntil(int64_t spinNs, Ready ready) {
  static constexpr int kYields = 2000;
  if (spinNs > 0) {
    auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spinNs);
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (ready())
          return true;
        cpuRelax();
      }
      if (std::chrono::steady_clock::now() >= until)
        break;
    }
  }
  for (int i = 0; i < kYields; ++i) {
    if (ready())
      return true;
    std::this_thread::yield();
  }
  return ready();
}

/// The CPUs this process may run on.
unsigned availableCpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    return static_cast<unsigned>(CPU_COUNT(&set));
#endif
  return std::thread::hardware_concurrency();
}

class Pool {
public:
  static Pool &get() {
    static Pool pool;
    return pool;
  }

  int32_t size() const { return static_cast<int32_t>(workers.size()) + 1; }

  /// Runs fn(t) for t in [0, size()) on the team; the caller is thread 0.
  /// Forks from different threads (sessions running at once) take the team
  /// one after the other. `region` keys the fork's timing when profiling.
  ///
  /// The hand-off is lock-free while the threads spin: the task and the
  /// count of workers to wait for are written before the generation that
  /// publishes them. A thread that gave up spinning sleeps on a condition
  /// variable after announcing itself (`sleepers`, `forkerSleeps`); the side
  /// that publishes checks that announcement after publishing, both
  /// sequentially consistent, so one of the two always sees the other.
  template <typename Fn> void run(Fn &&fn, const void *region) {
    std::lock_guard<std::mutex> exclusive(forkMutex);
    int64_t start = profiling ? moir::rt::profileNow() : 0;
    taskFn = &fn;
    taskCall = [](void *f, int32_t t) { (*static_cast<std::remove_reference_t<Fn> *>(f))(t); };
    pending.store(static_cast<int32_t>(workers.size()), std::memory_order_relaxed);
    generation.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) != 0) {
      std::lock_guard<std::mutex> lock(mutex);
      wake.notify_all();
    }
    threadId = 0;
    inTeam = true;
    if (profiling)
      busyNs[0] = timedShare(fn, 0);
    else
      fn(0);
    inTeam = false;
    auto finished = [&] { return pending.load(std::memory_order_acquire) == 0; };
    if (!spinUntil(spinNs, finished)) {
      std::unique_lock<std::mutex> lock(mutex);
      forkerSleeps.store(true, std::memory_order_seq_cst);
      done.wait(lock, [&] { return pending.load(std::memory_order_seq_cst) == 0; });
      forkerSleeps.store(false, std::memory_order_relaxed);
    }
    if (profiling)
      moir::rt::recordRegion(region, moir::rt::profileNow() - start, busyNs.data(), size());
  }

  /// A sense-reversing barrier across the team.
  void barrier() {
    int32_t n = size();
    if (n == 1)
      return;
    bool sense = !barrierSense.load(std::memory_order_relaxed);
    if (barrierCount.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
      barrierCount.store(0, std::memory_order_relaxed);
      barrierSense.store(sense, std::memory_order_release);
      return;
    }
    int64_t start = profiling ? moir::rt::profileNow() : 0;
    auto released = [&] { return barrierSense.load(std::memory_order_acquire) == sense; };
    while (!spinUntil(spinNs, released)) {
    }
    if (profiling)
      barrierWaitNs += moir::rt::profileNow() - start;
  }

private:
  Pool() {
    unsigned n = std::thread::hardware_concurrency();
    if (const char *env = std::getenv("MOIR_NUM_THREADS"))
      n = static_cast<unsigned>(std::atoi(env));
    n = n ? n : 1;
    busyNs.assign(n, 0);
    spinNs = n <= availableCpus() ? kSpinNs : 0;
    for (unsigned t = 1; t < n; ++t)
      workers.emplace_back([this, t] { work(static_cast<int32_t>(t)); });
  }
  ~Pool() {
    stopping.store(true, std::memory_order_relaxed);
    generation.fetch_add(1, std::memory_order_seq_cst);
    {
      std::lock_guard<std::mutex> lock(mutex);
      wake.notify_all();
    }
    for (std::thread &w : workers)
      w.join();
  }

  void work(int32_t t) {
    uint64_t seen = 0;
    for (;;) {
      auto published = [&] { return generation.load(std::memory_order_acquire) != seen; };
      if (!spinUntil(spinNs, published)) {
        std::unique_lock<std::mutex> lock(mutex);
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        wake.wait(lock, [&] { return generation.load(std::memory_order_seq_cst) != seen; });
        sleepers.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = generation.load(std::memory_order_acquire);
      if (stopping.load(std::memory_order_relaxed))
        return;
      threadId = t;
      inTeam = true;
      auto share = [this](int32_t t) { taskCall(taskFn, t); };
      if (profiling)
        busyNs[t] = timedShare(share, t);
      else
        share(t);
      inTeam = false;
      if (pending.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
          forkerSleeps.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lock(mutex);
        done.notify_one();
      }
    }
  }

  std::vector<std::thread> workers;
  /// How long a waiting thread pauses before it yields (spinUntil).
  static constexpr int64_t kSpinNs = 1000000;
  int64_t spinNs = 0;
  const bool profiling = moir::rt::regionProfiling();
  /// Each thread's share of the current fork (profiling).
  std::vector<int64_t> busyNs;
  std::mutex forkMutex;
  /// Only for sleeping: the hand-off itself is the atomics below.
  std::mutex mutex;
  std::condition_variable wake, done;
  /// The current fork's work: taskCall(taskFn, t).
  void *taskFn = nullptr;
  void (*taskCall)(void *, int32_t) = nullptr;
  std::atomic<int32_t> pending{0};
  std::atomic<uint64_t> generation{0};
  std::atomic<int32_t> sleepers{0};
  std::atomic<bool> forkerSleeps{false};
  std::atomic<bool> stopping{false};
  std::atomic<int32_t> barrierCount{0};
  std::atomic<bool> barrierSense{false};
};

/// Runs region `task`'s invoke(0) on the calling thread alone: nested in a
/// team's region (at any depth: a fork from inside would wait for the pool
/// its own team holds), without a team, or kept off it by an if clause.
/// Regions nested in it stay on this thread too. Timed as a fork of one
/// thread when profiling, unless nested.
template <typename Fn> void runAlone(Fn &&invoke, Microtask task) {
  bool wasInTeam = inTeam;
  int32_t wasId = threadId;
  inTeam = false;
  ++nestedDepth;
  if (!moir::rt::regionProfiling() || wasInTeam || nestedDepth > 1) {
    invoke(0);
  } else {
    int64_t busy = timedShare(invoke, 0);
    moir::rt::recordRegion(reinterpret_cast<const void *>(task), busy, &busy, 1);
  }
  --nestedDepth;
  inTeam = wasInTeam;
  threadId = wasId;
}

/// Threads in the current team: the pool inside a fork, 1 outside or nested.
int32_t teamSize() { return inTeam && Pool::get().size() > 1 ? Pool::get().size() : 1; }

template <typename T>
void staticInit(int32_t gtid, int32_t *lastIter, T *lower, T *upper, T *stride, T incr) {
  int32_t n = teamSize();
  if (n == 1 || incr == 0) {
    if (lastIter)
      *lastIter = 1;
    *stride = *upper - *lower + 1;
    return;
  }
  // Inclusive bounds; split the trip count into n near-equal chunks.
  T trips = (*upper - *lower) / incr + 1;
  T chunk = trips / n, extra = trips % n;
  T t = static_cast<T>(gtid);
  T begin = t * chunk + (t < extra ? t : extra);
  T count = chunk + (t < extra ? 1 : 0);
  T first = *lower + begin * incr;
  if (count == 0) {
    *lower = *upper + incr; // empty
  } else {
    *lower = first;
    *upper = first + (count - 1) * incr;
  }
  if (lastIter)
    *lastIter = (t == static_cast<T>(n - 1));
  *stride = trips * incr;
}

} // namespace

extern "C" {

int32_t __kmpc_global_thread_num(void *) { return inTeam ? threadId : 0; }

void __kmpc_fork_call(void *, int32_t argc, Microtask task, ...) {
  // MLIR's OpenMP lowering passes the captured values as one aggregate.
  va_list ap;
  va_start(ap, task);
  void *args[4] = {};
  for (int32_t i = 0; i < argc && i < 4; ++i)
    args[i] = va_arg(ap, void *);
  va_end(ap);
  auto invoke = [&](int32_t t) {
    int32_t gtid = t, btid = t;
    switch (argc) {
    case 0: task(&gtid, &btid); break;
    case 1: task(&gtid, &btid, args[0]); break;
    case 2: task(&gtid, &btid, args[0], args[1]); break;
    case 3: task(&gtid, &btid, args[0], args[1], args[2]); break;
    default: task(&gtid, &btid, args[0], args[1], args[2], args[3]); break;
    }
  };
  // Nested regions, at any depth, and every region without a team run on
  // the calling thread alone.
  if (inTeam || nestedDepth > 0 || Pool::get().size() == 1)
    return runAlone(invoke, task);
  Pool::get().run(invoke, reinterpret_cast<const void *>(task));
}

// A region with an if clause (the compiler's moir-cpu-parallel-if:
// more than one work item): forked when `cond` holds, else run by the
// caller alone, as a region nested in a team's is. LLVM passes the
// captured values as one aggregate here, not as variadic arguments.
void __kmpc_fork_call_if(void *loc, int32_t argc, Microtask task, int32_t cond, void *args) {
  if (cond) {
    if (argc == 0)
      __kmpc_fork_call(loc, 0, task);
    else
      __kmpc_fork_call(loc, 1, task, args);
    return;
  }
  runAlone(
      [&](int32_t) {
        int32_t gtid = 0, btid = 0;
        if (argc == 0)
          task(&gtid, &btid);
        else
          task(&gtid, &btid, args);
      },
      task);
}

void __kmpc_for_static_init_4(void *, int32_t gtid, int32_t, int32_t *last, int32_t *lo,
                              int32_t *hi, int32_t *stride, int32_t incr, int32_t) {
  staticInit<int32_t>(gtid, last, lo, hi, stride, incr);
}
void __kmpc_for_static_init_4u(void *, int32_t gtid, int32_t, int32_t *last, uint32_t *lo,
                               uint32_t *hi, int32_t *stride, int32_t incr, int32_t) {
  uint32_t s = 0;
  staticInit<uint32_t>(gtid, last, lo, hi, &s, static_cast<uint32_t>(incr));
  *stride = static_cast<int32_t>(s);
}
void __kmpc_for_static_init_8(void *, int32_t gtid, int32_t, int32_t *last, int64_t *lo,
                              int64_t *hi, int64_t *stride, int64_t incr, int64_t) {
  staticInit<int64_t>(gtid, last, lo, hi, stride, incr);
}
void __kmpc_for_static_init_8u(void *, int32_t gtid, int32_t, int32_t *last, uint64_t *lo,
                               uint64_t *hi, int64_t *stride, int64_t incr, int64_t) {
  uint64_t s = 0;
  staticInit<uint64_t>(gtid, last, lo, hi, &s, static_cast<uint64_t>(incr));
  *stride = static_cast<int64_t>(s);
}
void __kmpc_for_static_fini(void *, int32_t) {}
void __kmpc_barrier(void *, int32_t) {
  if (teamSize() > 1)
    Pool::get().barrier();
}
void __kmpc_push_num_threads(void *, int32_t, int32_t) {}

} // extern "C"
