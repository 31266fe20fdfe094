// The CPU driver: the artifact's shared object, loaded from memory.
#include "model.h"
#include "status.h"

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <dlfcn.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

using moir::rt::fail;

// The runtime's thread pool (parallel.cpp), as the compiled code calls it.
using CopyMicrotask = void (*)(int32_t *, int32_t *, ...);
extern "C" void __kmpc_fork_call(void *, int32_t, CopyMicrotask, ...);

namespace {

/// Huge pages for the weights (copyToHugePages):
/// MOIR_HUGE_PAGES=0 never, =1 whatever the size and the memory say, unset
/// where Linux's transparent huge pages are not switched off (`never`).
enum class HugePages { Off, Auto, Forced };

HugePages hugePagesSetting() {
  const char *env = std::getenv("MOIR_HUGE_PAGES");
  if (env && std::strcmp(env, "0") == 0)
    return HugePages::Off;
  if (env && std::strcmp(env, "1") == 0)
    return HugePages::Forced;
  static const bool transparent = [] {
    char mode[128] = {};
    if (FILE *f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
      if (!std::fgets(mode, sizeof mode, f))
        mode[0] = 0;
      std::fclose(f);
    }
    return mode[0] && !std::strstr(mode, "[never]");
  }();
  return transparent ? HugePages::Auto : HugePages::Off;
}

std::map<void *, int> &stagedFiles() {
  static std::map<void *, int> files;
  return files;
}

/// The weights' copy on huge pages (copyToHugePages), unmapped with the
/// driver; none: the weights are read in place from the artifact's mapping.
struct HugePageCopy {
  uint8_t *data = nullptr;
  size_t bytes = 0;
};

class CPUDriver : public moir::rt::Driver {
public:
  CPUDriver(void *handle, void (*entry)(void **), const uint8_t *weights,
            HugePageCopy copy)
      : handle(handle), entry(entry), weightsBase(copy.data ? copy.data : weights), copy(copy),
        // Code whose Halide kernels keep KV caches on an OpenCL device
        // exports it: the device's copies of a buffer are freed with it.
        forget(reinterpret_cast<void (*)(void *)>(dlsym(handle, "moir_hl_forget"))) {}
  ~CPUDriver() override {
    moir::rt::unloadSharedObject(handle);
    if (copy.data)
      munmap(copy.data, copy.bytes);
  }
  moir_status call(void **args) override {
    entry(args);
    return MOIR_OK;
  }
  void *allocate(size_t bytes) override {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (!rounded)
      rounded = 64;
    void *p = std::aligned_alloc(64, rounded);
    if (p)
      std::memset(p, 0, rounded);
    return p;
  }
  void release(void *buffer) override {
    if (forget && buffer)
      forget(buffer);
    std::free(buffer);
  }
  bool hostVisible() const override { return true; }
  moir_status upload(void *dst, const void *src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
    return MOIR_OK;
  }
  moir_status download(void *dst, const void *src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
    return MOIR_OK;
  }
  const uint8_t *weights() const override { return weightsBase; }

private:
  void *handle;
  void (*entry)(void **);
  const uint8_t *weightsBase;
  HugePageCopy copy;
  void (*forget)(void *);
};

} // namespace

moir_status moir::rt::loadSharedObject(const std::string &path, const uint8_t *code,
                                       size_t bytes, void **handleOut,
                                       void (**entryOut)(void **)) {
  // dlopen needs a file: hand it an anonymous in-memory one.
  int fd = memfd_create("moir-code", MFD_CLOEXEC);
  if (fd < 0)
    return fail(MOIR_ERROR_IO, path + ": memfd_create failed: " + std::strerror(errno));
  size_t written = 0;
  while (written < bytes) {
    ssize_t n = write(fd, code + written, bytes - written);
    if (n <= 0) {
      close(fd);
      return fail(MOIR_ERROR_IO, path + ": cannot stage the code: " + std::strerror(errno));
    }
    written += static_cast<size_t>(n);
  }
  std::string name = "/proc/self/fd/" + std::to_string(fd);
  void *handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    close(fd);
  else
    // The fd stays open while the code is loaded: dlopen knows libraries by
    // name, and a reused fd number would make a second model's
    // /proc/self/fd/N look like the first one's, already loaded.
    stagedFiles()[handle] = fd;
  if (!handle)
    return fail(MOIR_ERROR_FORMAT, path + ": cannot load the compiled code: " + dlerror());
  auto entry = reinterpret_cast<void (*)(void **)>(dlsym(handle, "moir_forward"));
  if (!entry) {
    unloadSharedObject(handle);
    return fail(MOIR_ERROR_FORMAT, path + ": the compiled code has no moir_forward");
  }
  *handleOut = handle;
  *entryOut = entry;
  return MOIR_OK;
}

void moir::rt::unloadSharedObject(void *handle) {
  dlclose(handle);
  auto it = stagedFiles().find(handle);
  if (it != stagedFiles().end()) {
    close(it->second);
    stagedFiles().erase(it);
  }
}

/// The generated code mallocs each layer's temporaries (attention scores,
/// expert activations: up to tens of MB in a prefill) and frees them at the
/// layer's end. By default glibc hands such blocks back to the kernel (munmap
/// or a heap trim), so the next layer faults in freshly zeroed pages again:
/// a fifth of a 512-token prefill went to clearing pages. Freed memory is
/// kept for reuse instead (glibc's largest mmap threshold, and no trimming
/// below 1 GiB). Set once per process, on the first CPU model loaded.
static void keepFreedMemory() {
#if defined(__GLIBC__)
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  });
#endif
}

/// The page-aligned span [start, end) of `bytes` bytes at `p`, shrunk to
/// whole pages inside it when `inner` (advice that must not touch a
/// neighbour's pages), else grown to cover it.
static std::pair<uintptr_t, uintptr_t> pageSpan(const uint8_t *p, size_t bytes, bool inner) {
  auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  auto start = reinterpret_cast<uintptr_t>(p), end = start + bytes;
  if (inner)
    return {(start + page - 1) & ~(page - 1), end & ~(page - 1)};
  return {start & ~(page - 1), (end + page - 1) & ~(page - 1)};
}

/// Maps the weights' pages into this process now (they are read in place
/// from the artifact's mapping): otherwise the first prefill takes one page
/// fault per 64 KB of weights. Linux 5.14+ (MADV_POPULATE_READ); elsewhere
/// the pages fault in on first use. MOIR_PREFAULT=0 skips it (a model larger
/// than memory, where reading every page at load would evict the others).
///
/// An artifact with expert residency (moirc --expert-resident-budget) maps
/// in everything but its paged (cold) experts, which are read from the file
/// when a token is routed to them, and locks its resident experts' pages
/// (mlock; best effort: where RLIMIT_MEMLOCK refuses, they stay resident as
/// long as memory allows, like every mapped page). Each locked run splits
/// the mapping, so past kMaxLockedRuns runs (a kernel's map count is
/// limited, 65530 by default) nothing is locked.
/// MOIR_PREFAULT=0: the weights need not all be in memory (a model larger
/// than it); they are neither mapped in at load nor copied onto huge pages.
static bool prefaultOff() {
  const char *env = std::getenv("MOIR_PREFAULT");
  return env && std::strcmp(env, "0") == 0;
}

static void prefaultWeights(const uint8_t *weights, size_t bytes,
                            const std::vector<moir::rt::Residency> &residency) {
  constexpr size_t kMaxLockedRuns = 4096;
  if (prefaultOff())
    return;
  if (!bytes)
    return;
  std::vector<moir::rt::Residency> paged;
  size_t locked = 0;
  for (const moir::rt::Residency &r : residency) {
    if (!r.resident)
      paged.push_back(r);
    locked += r.resident;
  }
  std::sort(paged.begin(), paged.end(),
            [](const auto &a, const auto &b) { return a.offset < b.offset; });
  auto populate = [&](uint64_t from, uint64_t to) {
#ifdef MADV_POPULATE_READ
    if (to > from) {
      auto [start, end] = pageSpan(weights + from, to - from, /*inner=*/false);
      (void)madvise(reinterpret_cast<void *>(start), end - start, MADV_POPULATE_READ);
    }
#else
    (void)from;
    (void)to;
#endif
  };
  uint64_t next = 0;
  for (const moir::rt::Residency &r : paged) {
    populate(next, r.offset);
    next = std::max(next, r.offset + r.bytes);
  }
  populate(next, bytes);
  if (locked > kMaxLockedRuns)
    return;
  for (const moir::rt::Residency &r : residency)
    if (r.resident && r.bytes) {
      auto [start, end] = pageSpan(weights + r.offset, r.bytes, /*inner=*/false);
      (void)mlock(reinterpret_cast<void *>(start), end - start);
    }
}

/// Code compiled onto AMX tiles (moirc --cpu-amx on a CPU with AMX-BF16)
/// exports `moir_uses_amx`. Linux hands a process the tiles' 8 KB of state
/// only when it asks (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, once per
/// process, for all its threads); without it the first tile instruction
/// faults. Asked here, before any of that code runs.
static moir_status grantTiles(const std::string &path, void *handle) {
  if (!dlsym(handle, "moir_uses_amx"))
    return moir::rt::ok();
#if defined(__x86_64__) && defined(SYS_arch_prctl)
  constexpr int kRequestPermission = 0x1023, kTileData = 18;
  if (syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0)
    return moir::rt::ok();
  return fail(MOIR_ERROR_UNSUPPORTED,
              path + ": the code runs on AMX tiles (compiled with --cpu-amx for a CPU with "
                     "AMX-BF16), but this system refused the tile state (" +
                  std::strerror(errno) +
                  "; Linux 5.16 or later on such a CPU grants it); recompile with "
                  "--cpu-amx=false or for this CPU");
#else
  return fail(MOIR_ERROR_UNSUPPORTED,
              path + ": the code runs on AMX tiles (compiled with --cpu-amx), which only x86-64 "
                     "Linux hosts have; recompile for this CPU");
#endif
}

/// The weights' copy onto huge pages, taken a piece at a time by the pool's
/// threads (copyPieces), each piece of the mapping dropped from the process
/// once copied.
struct CopyJob {
  const uint8_t *from;
  uint8_t *to;
  size_t bytes, piece;
  std::atomic<size_t> next;
};

// Variadic, as the pool's microtasks are typed (a call through another
// function type is undefined: UBSan's -fsanitize=function catches it).
static void copyPieces(int32_t *, int32_t *btid, ...) {
  va_list ap;
  va_start(ap, btid);
  auto *job = static_cast<CopyJob *>(va_arg(ap, void *));
  va_end(ap);
  for (size_t i = job->next.fetch_add(1); i * job->piece < job->bytes;
       i = job->next.fetch_add(1)) {
    size_t at = i * job->piece, n = std::min(job->piece, job->bytes - at);
    std::memcpy(job->to + at, job->from + at, n);
    auto [start, end] = pageSpan(job->from + at, n, /*inner=*/true);
    if (end > start)
      (void)madvise(reinterpret_cast<void *>(start), end - start, MADV_DONTNEED);
  }
}

/// The first number in a line of /proc/meminfo, in bytes; 0 where absent.
static uint64_t meminfoBytes(const char *key) {
  FILE *f = std::fopen("/proc/meminfo", "r");
  if (!f)
    return 0;
  char line[256];
  uint64_t kb = 0;
  size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
      kb = std::strtoull(line + n + 1, nullptr, 10);
      break;
    }
  std::fclose(f);
  return kb * 1024;
}

/// Decode reads every weight once per token, straight through. Read in place
/// from the artifact's mapping, the weights lie on 4 KB pages (the page cache
/// does not map a file's pages 2 MB at a time here: FilePmdMapped stays 0):
/// every 4 KB is a TLB miss and a page walk, and the hardware prefetchers stop
/// at each page's end. A copy on 2 MB transparent huge pages, made once at
/// load, took decode up 10-16% on the Mixtral- and DeepSeek-V2-Lite-shaped
/// Q8_0/Q4_K_M/bf16 files (DeepSeek Q8_0 38.5 -> 44.5 tok/s, 2 threads,
/// bench/RESULTS.md). It costs the load 0.3-2.6 s for those 1.7 GB on 2
/// threads (0.6-5.3 s on one), most of it the kernel clearing 2 MB pages and
/// compacting memory into 2 MB runs.
/// Made when (MOIR_HUGE_PAGES=0: never; =1: whatever the size and the memory
/// say, with a line on stderr once made):
///   - Linux, with transparent huge pages not switched off (`never`);
///   - no expert is paged (moirc --expert-resident-budget: those stay in the
///     file, read when routed to) and MOIR_PREFAULT is not 0 (both say the
///     weights need not all be in memory);
///   - the weights fit in MemAvailable with 512 MB to spare (the page cache
///     that holds the file counts as available: it is dropped as the copy
///     grows). The pool's threads copy 64 MB pieces side by side, each piece
///     of the mapping unmapped from this process once copied, so it is not
///     held twice.
/// Anything failing leaves the weights where they are.
static HugePageCopy copyToHugePages(const uint8_t *weights, size_t bytes,
                                    const std::vector<moir::rt::Residency> &residency) {
  HugePageCopy none;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHuge = size_t(2) << 20, kChunk = size_t(64) << 20;
  HugePages setting = hugePagesSetting();
  bool forced = setting == HugePages::Forced;
  if (setting == HugePages::Off || !bytes || (!forced && bytes < kHuge) || !residency.empty() ||
      prefaultOff())
    return none;
  if (!forced && bytes + (size_t(512) << 20) > meminfoBytes("MemAvailable"))
    return none;
  size_t size = (bytes + kHuge - 1) & ~(kHuge - 1);
  void *area = mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED)
    return none;
  // Keep the 2 MB-aligned run and hand back the rest.
  auto base = reinterpret_cast<uintptr_t>(area);
  uintptr_t aligned = (base + kHuge - 1) & ~(kHuge - 1);
  if (aligned > base)
    munmap(area, aligned - base);
  munmap(reinterpret_cast<void *>(aligned + size), base + kHuge - aligned);
  auto *copy = reinterpret_cast<uint8_t *>(aligned);
  if (madvise(copy, size, MADV_HUGEPAGE) != 0) {
    munmap(copy, size);
    return none;
  }
  // Every thread of the pool takes the next piece until none is left: the
  // page faults (each a 2 MB page cleared, often after compaction) run side
  // by side.
  CopyJob job{weights, copy, bytes, kChunk, {0}};
  __kmpc_fork_call(nullptr, 1, copyPieces, static_cast<void *>(&job));
  // Read-only, as the mapping was: a stray write faults rather than
  // corrupting a weight.
  (void)mprotect(copy, size, PROT_READ);
  if (forced)
    std::fprintf(stderr, "moir: MOIR_HUGE_PAGES=1: %zu bytes of weights copied onto huge pages\n",
                 bytes);
  return {copy, size};
#else
  (void)weights;
  (void)bytes;
  (void)residency;
  return none;
#endif
}

moir_status moir::rt::loadCPUDriver(const std::string &path, const uint8_t *code,
                                    size_t bytes, const uint8_t *weights, size_t weightBytes,
                                    const std::vector<Residency> &residency, Driver **out) {
  keepFreedMemory();
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
  if (moir_status s = loadSharedObject(path, code, bytes, &handle, &entry); s != MOIR_OK)
    return s;
  if (moir_status s = grantTiles(path, handle); s != MOIR_OK) {
    unloadSharedObject(handle);
    return s;
  }
  HugePageCopy copy = copyToHugePages(weights, weightBytes, residency);
  if (!copy.data)
    prefaultWeights(weights, weightBytes, residency);
  *out = new CPUDriver(handle, entry, weights, copy);
  return MOIR_OK;
}
