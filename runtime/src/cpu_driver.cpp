// The CPU driver: the artifact's shared object, loaded from memory.
#include "model.h"
#include "status.h"

#include <algorithm>
#include <cerrno>
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

namespace {

std::map<void *, int> &stagedFiles() {
  static std::map<void *, int> files;
  return files;
}

class CPUDriver : public moir::rt::Driver {
public:
  CPUDriver(void *handle, void (*entry)(void **), const uint8_t *weights)
      : handle(handle), entry(entry), weightsBase(weights) {}
  ~CPUDriver() override { moir::rt::unloadSharedObject(handle); }
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
  void release(void *buffer) override { std::free(buffer); }
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
static void prefaultWeights(const uint8_t *weights, size_t bytes,
                            const std::vector<moir::rt::Residency> &residency) {
  constexpr size_t kMaxLockedRuns = 4096;
  if (const char *env = std::getenv("MOIR_PREFAULT"); env && std::strcmp(env, "0") == 0)
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

moir_status moir::rt::loadCPUDriver(const std::string &path, const uint8_t *code,
                                    size_t bytes, const uint8_t *weights, size_t weightBytes,
                                    const std::vector<Residency> &residency, Driver **out) {
  keepFreedMemory();
  prefaultWeights(weights, weightBytes, residency);
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
  if (moir_status s = loadSharedObject(path, code, bytes, &handle, &entry); s != MOIR_OK)
    return s;
  if (moir_status s = grantTiles(path, handle); s != MOIR_OK) {
    unloadSharedObject(handle);
    return s;
  }
  *out = new CPUDriver(handle, entry, weights);
  return MOIR_OK;
}
