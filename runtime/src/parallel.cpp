// The runtime's thread pool, behind the small part of the OpenMP runtime ABI
// (libomp's __kmpc_* entry points) that MLIR's OpenMP lowering emits for a
// parallel loop: fork a team, split the iterations (statically, or each
// thread's share with stealing for dynamic loops), barrier.
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
#include <memory>
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

/// Forks published so far: keys the team's dynamic loops (Dispatch).
std::atomic<uint64_t> forkCount{0};

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
    forkCount.fetch_add(1, std::memory_order_relaxed);
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

/// A worksharing loop whose iterations the threads take as they come
/// (schedule dynamic or guided: __kmpc_dispatch_*), static with stealing:
/// each thread starts on its share of a static split, taking a quarter of
/// what is left of it at a time from its front (at least the chunk), and a
/// thread whose share is done takes the back half of what is left of the
/// fullest other share. A thread that
/// starts late or meets slower iterations thus takes fewer, where a static
/// split made the others wait for it at the loop's barrier, and each
/// thread still works on its own contiguous share first (the rows the
/// previous loop left in its core's caches). A share is [begin, end) of
/// the iterations counted from 0, packed in one 64-bit word.
struct Dispatch {
  std::unique_ptr<std::atomic<uint64_t>[]> share;
  int32_t capacity = 0, threads = 1;
  /// Iterations per unit of the shares (1 below 2^32 iterations) and
  /// units taken at a time.
  uint64_t unit = 1, chunk = 1;
  /// (fork, loop of the fork) the state serves: its first thread to start
  /// the loop resets it.
  std::atomic<uint64_t> key{~uint64_t(0)};
};

uint64_t pack(uint64_t begin, uint64_t end) { return begin << 32 | end; }
uint64_t shareBegin(uint64_t s) { return s >> 32; }
uint64_t shareEnd(uint64_t s) { return s & 0xffffffffu; }

/// The team's loops, one slot per loop of a fork (the fork's loops are
/// separated by their barriers, so two slots suffice).
Dispatch teamLoops[2];
std::mutex teamLoopsMutex;
thread_local uint64_t loopFork = ~uint64_t(0);
thread_local uint64_t loopIndex = 0;

/// A thread's current dynamic loop at one depth of nested regions (the
/// ABI's next() names no loop, and a region nested in a loop's body, run
/// by this thread alone, has loops of its own): the loop's state (the
/// team's, or `alone`), its bounds and trip count.
struct LoopState {
  Dispatch *loop = nullptr;
  Dispatch alone;
  int64_t lower = 0, step = 1;
  uint64_t trips = 0;
};
thread_local std::vector<std::unique_ptr<LoopState>> loopStates;
LoopState &loopState() {
  size_t depth = static_cast<size_t>(nestedDepth);
  while (loopStates.size() <= depth)
    loopStates.push_back(std::make_unique<LoopState>());
  return *loopStates[depth];
}

template <typename T> void dispatchInit(T lb, T ub, T st, T chunk) {
  using S = std::make_signed_t<T>;
  // Inclusive bounds with a step of either sign; empty when past ub.
  uint64_t trips = 0;
  if (static_cast<S>(st) > 0 && !(lb > ub))
    trips = static_cast<uint64_t>((ub - lb) / st) + 1;
  else if (std::is_signed_v<T> && static_cast<S>(st) < 0 && !(lb < ub))
    trips = static_cast<uint64_t>((lb - ub) / static_cast<T>(-static_cast<S>(st))) + 1;
  LoopState &state = loopState();
  state.trips = trips;
  state.lower = static_cast<int64_t>(lb);
  state.step = static_cast<int64_t>(st);
  int32_t n = teamSize();
  auto fill = [&](Dispatch &d) {
    if (d.capacity < n) {
      d.share.reset(new std::atomic<uint64_t>[n]);
      d.capacity = n;
    }
    // Shares hold 32-bit bounds: a longer loop is split in units of
    // several iterations.
    d.unit = trips < (uint64_t(1) << 32) ? 1 : (trips + (uint64_t(1) << 31) - 1) >> 31;
    uint64_t units = (trips + d.unit - 1) / d.unit;
    d.chunk = chunk > 0 ? (static_cast<uint64_t>(chunk) + d.unit - 1) / d.unit : 1;
    d.threads = n;
    for (int32_t t = 0; t < n; ++t)
      d.share[t].store(pack(units * t / n, units * (t + 1) / n), std::memory_order_relaxed);
  };
  Dispatch *d = &state.alone;
  if (n > 1) {
    uint64_t fork = forkCount.load(std::memory_order_acquire);
    if (loopFork != fork) {
      loopFork = fork;
      loopIndex = 0;
    }
    uint64_t key = fork * 1024 + loopIndex++;
    d = &teamLoops[key % 2];
    if (d->key.load(std::memory_order_acquire) != key) {
      std::lock_guard<std::mutex> lock(teamLoopsMutex);
      if (d->key.load(std::memory_order_relaxed) != key) {
        fill(*d);
        d->key.store(key, std::memory_order_release);
      }
    }
  } else {
    fill(*d);
    d->chunk = ~uint64_t(0); // one thread: one chunk
  }
  state.loop = d;
}

/// The next iterations [first, first + count) for thread `t`: from the
/// front of its share, else stolen from the back of the fullest other.
bool takeIterations(Dispatch &d, int32_t t, uint64_t &first, uint64_t &count) {
  for (;;) {
    std::atomic<uint64_t> &own = d.share[t];
    uint64_t s = own.load(std::memory_order_relaxed);
    while (shareBegin(s) < shareEnd(s)) {
      // A quarter of what is left of the share, at least the chunk: few
      // atomic steps on a long loop, single iterations at its end.
      uint64_t left = shareEnd(s) - shareBegin(s);
      uint64_t take = std::min(std::max(d.chunk, left / 4), left);
      if (own.compare_exchange_weak(s, pack(shareBegin(s) + take, shareEnd(s)),
                                    std::memory_order_relaxed)) {
        first = shareBegin(s);
        count = take;
        return true;
      }
    }
    // Steal the back half of the fullest other share.
    int32_t victim = -1;
    uint64_t most = 0;
    for (int32_t v = 0; v < d.threads; ++v) {
      uint64_t o = d.share[v].load(std::memory_order_relaxed);
      uint64_t left = shareEnd(o) - std::min(shareBegin(o), shareEnd(o));
      if (v != t && left > most) {
        most = left;
        victim = v;
      }
    }
    if (victim < 0)
      return false;
    uint64_t o = d.share[victim].load(std::memory_order_relaxed);
    if (shareBegin(o) >= shareEnd(o))
      continue;
    uint64_t left = shareEnd(o) - shareBegin(o);
    uint64_t split = shareEnd(o) - (left + 1) / 2;
    if (!d.share[victim].compare_exchange_strong(o, pack(shareBegin(o), split),
                                                 std::memory_order_relaxed))
      continue;
    // Only this thread writes its own (empty) share's bounds now.
    own.store(pack(split, shareEnd(o)), std::memory_order_relaxed);
  }
}

/// The next chunk [*lb, *ub] of the current loop, or 0 when none is left.
template <typename T> int32_t dispatchNext(int32_t *last, T *lb, T *ub, T *st) {
  LoopState &state = loopState();
  Dispatch *d = state.loop;
  T lb0 = static_cast<T>(state.lower), st0 = static_cast<T>(state.step);
  uint64_t loopTrips = state.trips;
  uint64_t first = 0, count = 0;
  int32_t t = d->threads > 1 ? threadId : 0;
  if (!takeIterations(*d, t, first, count))
    return 0;
  first *= d->unit;
  count = std::min(count * d->unit, loopTrips - first);
  *lb = lb0 + static_cast<T>(first) * st0;
  *ub = lb0 + static_cast<T>(first + count - 1) * st0;
  if (st)
    *st = st0;
  if (last)
    *last = first + count == loopTrips;
  return 1;
}

/// dispatchNext for the unsigned loops, whose stride the ABI passes signed.
template <typename U, typename S> int32_t dispatchNextUnsigned(int32_t *last, U *lb, U *ub, S *st) {
  U stride = 0;
  int32_t more = dispatchNext<U>(last, lb, ub, &stride);
  if (st)
    *st = static_cast<S>(stride);
  return more;
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

// Dynamic and guided worksharing loops (moir-cpu-dynamic-schedule): both
// take the shares with stealing above.
void __kmpc_dispatch_init_4(void *, int32_t, int32_t sched, int32_t lb, int32_t ub, int32_t st,
                            int32_t chunk) {
  dispatchInit<int32_t>(lb, ub, st, chunk);
}
void __kmpc_dispatch_init_4u(void *, int32_t, int32_t sched, uint32_t lb, uint32_t ub,
                             int32_t st, int32_t chunk) {
  dispatchInit<uint32_t>(lb, ub, static_cast<uint32_t>(st), static_cast<uint32_t>(chunk));
}
void __kmpc_dispatch_init_8(void *, int32_t, int32_t sched, int64_t lb, int64_t ub, int64_t st,
                            int64_t chunk) {
  dispatchInit<int64_t>(lb, ub, st, chunk);
}
void __kmpc_dispatch_init_8u(void *, int32_t, int32_t sched, uint64_t lb, uint64_t ub,
                             int64_t st, int64_t chunk) {
  dispatchInit<uint64_t>(lb, ub, static_cast<uint64_t>(st), static_cast<uint64_t>(chunk));
}
int32_t __kmpc_dispatch_next_4(void *, int32_t, int32_t *last, int32_t *lb, int32_t *ub,
                               int32_t *st) {
  return dispatchNext<int32_t>(last, lb, ub, st);
}
int32_t __kmpc_dispatch_next_4u(void *, int32_t, int32_t *last, uint32_t *lb, uint32_t *ub,
                                int32_t *st) {
  return dispatchNextUnsigned(last, lb, ub, st);
}
int32_t __kmpc_dispatch_next_8(void *, int32_t, int32_t *last, int64_t *lb, int64_t *ub,
                               int64_t *st) {
  return dispatchNext<int64_t>(last, lb, ub, st);
}
int32_t __kmpc_dispatch_next_8u(void *, int32_t, int32_t *last, uint64_t *lb, uint64_t *ub,
                                int64_t *st) {
  return dispatchNextUnsigned(last, lb, ub, st);
}
void __kmpc_dispatch_fini_4(void *, int32_t) {}
void __kmpc_dispatch_fini_4u(void *, int32_t) {}
void __kmpc_dispatch_fini_8(void *, int32_t) {}
void __kmpc_dispatch_fini_8u(void *, int32_t) {}
void __kmpc_dispatch_deinit(void *, int32_t) {}
void __kmpc_barrier(void *, int32_t) {
  if (teamSize() > 1)
    Pool::get().barrier();
}
void __kmpc_push_num_threads(void *, int32_t, int32_t) {}

} // extern "C"
