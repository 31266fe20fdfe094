// The GPU driver, shared by every vendor: the vendor's library (libcuda.so.1,
// libamdhip64.so) is opened with dlopen and used through a table of entry
// points (MOIR_GPU_ENTRY_POINTS in gpu_driver.h names them for each vendor),
// so the runtime builds and runs without any SDK. The compiled host code calls the
// mgpu* functions below (the names MLIR's gpu-to-llvm lowering emits);
// moir_gpu_read_b32/_b64 read one element the host code branches on,
// moir_gpu_read_block a small buffer a host loop reads throughout.
// Everything runs on one stream, in order; device buffers are pooled by size,
// so a step's temporaries cost no allocation call.
#include "gpu_driver.h"
#include "model.h"
#include "status.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <memory>
#include <string>
#include <mutex>
#include <unordered_map>
#include <vector>

using moir::rt::fail;

namespace {

using moir::rt::gpu::Vendor;
using moir::rt::gpu::VendorAPI;
using DevicePtr = uint64_t;

/// Process-wide GPU state: the vendor, its device and one stream, a pool of
/// device buffers and the first error since it was read.
struct GPURuntime {
  const Vendor *vendor = nullptr;
  void *library = nullptr;
  VendorAPI api{};
  void *stream = nullptr;
  std::string deviceName;
  std::string error;
  std::mutex mutex;   // the pool
  std::mutex running; // sessions' calls, uploads, downloads
  std::unordered_map<DevicePtr, size_t> live;
  std::multimap<size_t, DevicePtr> idle;

  /// Host reads fetch the 256-byte line around the element and serve later
  /// reads of that line from it until the device next runs anything (the
  /// expert loop reads row offsets of many experts between launches). Every
  /// buffer starts on a 256-byte boundary and spans whole lines, so the line
  /// never leaves its allocation.
  static constexpr uintptr_t kLine = 256;
  alignas(16) uint8_t line[kLine];
  DevicePtr lineBase = 0;
  bool lineValid = false;

  template <typename T> T read(intptr_t address) {
    auto base = static_cast<DevicePtr>(address) & ~DevicePtr(kLine - 1);
    if (!lineValid || base != lineBase) {
      check(api.streamSynchronize(stream), "synchronizing the stream");
      if (!check(api.memcpyDtoH(line, base, kLine), "reading a device value"))
        return T();
      lineBase = base;
      lineValid = true;
    }
    T value;
    std::memcpy(&value, line + (static_cast<DevicePtr>(address) - base), sizeof value);
    return value;
  }

  /// MOIR_PROFILE=1: every launch and host read is timed (with a stream
  /// synchronization around it) and a table goes to stderr at exit.
  bool profile = std::getenv("MOIR_PROFILE") != nullptr;
  struct Sample {
    double seconds = 0;
    long calls = 0;
  };
  std::unordered_map<void *, std::string> names;
  std::unordered_map<std::string, Sample> samples;

  static GPURuntime &get() {
    static GPURuntime runtime;
    return runtime;
  }

  ~GPURuntime() {
    if (!profile || samples.empty())
      return;
    std::vector<std::pair<std::string, Sample>> rows(samples.begin(), samples.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto &a, const auto &b) { return a.second.seconds > b.second.seconds; });
    double total = 0;
    for (const auto &row : rows)
      total += row.second.seconds;
    std::fprintf(stderr, "MOIR_PROFILE: %.3f s in %zu kinds of device work\n", total, rows.size());
    for (size_t i = 0; i < rows.size() && i < 25; ++i)
      std::fprintf(stderr, "  %8.3f ms %5.1f%% %8ld calls  %s\n", rows[i].second.seconds * 1e3,
                   100 * rows[i].second.seconds / total, rows[i].second.calls,
                   rows[i].first.c_str());
  }

  double now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  void record(const std::string &message) {
    if (error.empty())
      error = message;
  }

  bool check(int result, const char *what) {
    if (result == 0)
      return true;
    record(std::string(what) + " failed: " + vendor->errorString(library, result));
    return false;
  }

  /// Forgets a failed opening, so a later one starts clean.
  void reset() {
    if (library)
      dlclose(library);
    library = nullptr;
    vendor = nullptr;
    stream = nullptr;
    api = VendorAPI{};
  }

  /// Opens the vendor's library, the device and the stream; "" on success.
  std::string init(const Vendor &wanted) {
    if (stream)
      return vendor == &wanted ? "" : std::string("this process already runs ") + vendor->name;
    vendor = &wanted;
    std::string tried;
    for (const char *name : wanted.libraries) {
      if (!name || library)
        continue;
      library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!library)
        tried += std::string(tried.empty() ? "" : "; ") + dlerror();
    }
    if (!library) {
      reset();
      return std::string("no ") + wanted.name + " driver: cannot load " + wanted.libraries[0] +
             " (" + tried + ")";
    }
    // Filled in the list's order, the order of Vendor::symbols.
#define MOIR_GPU_SLOT(name, params, cuda, hip) reinterpret_cast<void **>(&api.name),
    void **slots[] = {MOIR_GPU_ENTRY_POINTS(MOIR_GPU_SLOT)};
#undef MOIR_GPU_SLOT
    for (size_t i = 0; i < moir::rt::gpu::kVendorSymbols; ++i) {
      *slots[i] = dlsym(library, wanted.symbols[i]);
      if (!*slots[i]) {
        std::string why = std::string(wanted.name) + " driver library lacks " + wanted.symbols[i];
        reset();
        return why;
      }
    }
    std::string why = wanted.open(library, &deviceName, &stream);
    if (!why.empty())
      reset();
    return why;
  }

  void *allocate(size_t bytes) {
    size_t rounded = (bytes + 255) / 256 * 256;
    if (!rounded)
      rounded = 256;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = idle.find(rounded);
    DevicePtr p = 0;
    if (it != idle.end()) {
      p = it->second;
      idle.erase(it);
    } else if (api.memAlloc(&p, rounded) != 0) {
      // Out of memory: give the pooled buffers back and try once more.
      api.streamSynchronize(stream);
      for (auto &[size, q] : idle)
        api.memFree(q);
      idle.clear();
      if (!check(api.memAlloc(&p, rounded), "allocating device memory"))
        return nullptr;
    }
    live[p] = rounded;
    return reinterpret_cast<void *>(p);
  }

  void release(void *buffer) {
    if (!buffer)
      return;
    std::lock_guard<std::mutex> lock(mutex);
    auto p = reinterpret_cast<DevicePtr>(buffer);
    auto it = live.find(p);
    if (it == live.end())
      return;
    // Stream order makes reuse safe: later work on the one stream runs after
    // every kernel that used the buffer.
    idle.emplace(it->second, p);
    live.erase(it);
  }
};

DevicePtr dptr(const void *p) { return reinterpret_cast<DevicePtr>(p); }

class GPUDriver : public moir::rt::Driver {
public:
  GPUDriver(void *weights) : weightsBase(static_cast<uint8_t *>(weights)) {}
  ~GPUDriver() override {
    if (handle)
      moir::rt::unloadSharedObject(handle);
    GPURuntime::get().release(weightsBase);
  }
  void setCode(void *h, void (*e)(void **)) {
    handle = h;
    entry = e;
  }

  /// Every entry from a session: one at a time (the stream, the line cache
  /// and the error are shared), with the device current on this thread.
  std::unique_lock<std::mutex> enter() {
    GPURuntime &gpu = GPURuntime::get();
    std::unique_lock<std::mutex> lock(gpu.running);
    if (std::string why = gpu.vendor->bind(gpu.library); !why.empty())
      gpu.record(why);
    return lock;
  }

  moir_status call(void **args) override {
    auto lock = enter();
    GPURuntime &gpu = GPURuntime::get();
    if (!gpu.error.empty())
      return takeError();
    entry(args);
    gpu.check(gpu.api.streamSynchronize(gpu.stream), "running the model");
    return takeError();
  }
  void *allocate(size_t bytes) override {
    auto lock = enter();
    GPURuntime &gpu = GPURuntime::get();
    void *p = gpu.allocate(bytes);
    gpu.lineValid = false;
    if (p)
      gpu.check(gpu.api.memsetD8Async(dptr(p), 0, bytes, gpu.stream), "clearing device memory");
    else
      gpu.error.clear(); // the caller reports the failed allocation itself
    return p;
  }
  void release(void *buffer) override { GPURuntime::get().release(buffer); }
  bool hostVisible() const override { return false; }
  moir_status upload(void *dst, const void *src, size_t bytes) override {
    auto lock = enter();
    GPURuntime &gpu = GPURuntime::get();
    gpu.check(gpu.api.streamSynchronize(gpu.stream), "synchronizing the stream");
    gpu.lineValid = false;
    gpu.check(gpu.api.memcpyHtoD(dptr(dst), src, bytes), "copying to the device");
    return takeError();
  }
  moir_status download(void *dst, const void *src, size_t bytes) override {
    auto lock = enter();
    GPURuntime &gpu = GPURuntime::get();
    gpu.check(gpu.api.streamSynchronize(gpu.stream), "synchronizing the stream");
    gpu.check(gpu.api.memcpyDtoH(dst, dptr(src), bytes), "copying from the device");
    return takeError();
  }
  const uint8_t *weights() const override { return weightsBase; }

  static moir_status takeError() {
    GPURuntime &gpu = GPURuntime::get();
    if (gpu.error.empty())
      return MOIR_OK;
    std::string message = std::string(gpu.vendor->name) + " (" + gpu.deviceName + "): " + gpu.error;
    gpu.error.clear();
    return fail(MOIR_ERROR_DEVICE, message);
  }

private:
  uint8_t *weightsBase;
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
};

/// MOIR_PROFILE: the time a host read spends, synchronization included.
struct HostReadTimer {
  GPURuntime &gpu;
  double start;
  explicit HostReadTimer(GPURuntime &gpu) : gpu(gpu), start(gpu.profile ? gpu.now() : 0) {}
  ~HostReadTimer() {
    if (!gpu.profile)
      return;
    GPURuntime::Sample &sample = gpu.samples["host read (stream synchronization)"];
    sample.seconds += gpu.now() - start;
    ++sample.calls;
  }
};

} // namespace

moir_status moir::rt::gpu::loadGPUDriver(const Vendor &vendor, const std::string &path,
                                         const std::string &target, const uint8_t *code,
                                         size_t bytes, const uint8_t *weights,
                                         uint64_t weightBytes, Driver **out) {
  GPURuntime &gpu = GPURuntime::get();
  if (std::string why = gpu.init(vendor); !why.empty()) {
    gpu.error.clear();
    return fail(MOIR_ERROR_DEVICE, path + ": cannot run target '" + target + "': " + why);
  }
  // The weights go to the device once and stay there.
  void *deviceWeights = gpu.allocate(weightBytes);
  gpu.lineValid = false;
  if (!deviceWeights || !gpu.check(gpu.api.memcpyHtoD(dptr(deviceWeights), weights, weightBytes),
                                    "uploading the weights")) {
    gpu.release(deviceWeights);
    std::string why = gpu.error;
    gpu.error.clear();
    return fail(MOIR_ERROR_DEVICE, path + ": " + std::to_string(weightBytes) +
                                       " bytes of weights do not fit on " + gpu.deviceName +
                                       ": " + why);
  }
  auto driver = std::make_unique<GPUDriver>(deviceWeights);
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
  // Loading the host code loads its kernels (a constructor calls
  // mgpuModuleLoad): errors land in the runtime state.
  if (moir_status s = loadSharedObject(path, code, bytes, &handle, &entry); s != MOIR_OK)
    return s;
  driver->setCode(handle, entry);
  if (!gpu.error.empty()) {
    std::string why = gpu.error;
    gpu.error.clear();
    return fail(MOIR_ERROR_DEVICE, path + ": cannot load the kernels for '" + target +
                                       "' on " + gpu.deviceName + ": " + why);
  }
  *out = driver.release();
  return MOIR_OK;
}

// ---- what the compiled host code calls --------------------------------------

extern "C" {

void *mgpuModuleLoad(void *data, size_t) {
  GPURuntime &gpu = GPURuntime::get();
  void *module = nullptr;
  if (!gpu.stream) {
    gpu.record("kernels loaded before the GPU driver");
    return nullptr;
  }
  gpu.check(gpu.api.moduleLoadData(&module, data), "loading the kernels");
  return module;
}

void mgpuModuleUnload(void *module) {
  GPURuntime &gpu = GPURuntime::get();
  if (module && gpu.api.moduleUnload)
    gpu.api.moduleUnload(module);
}

void *mgpuModuleGetFunction(void *module, const char *name) {
  GPURuntime &gpu = GPURuntime::get();
  void *function = nullptr;
  if (!module) {
    gpu.record(std::string("kernel ") + name + " requested from a module that did not load");
    return nullptr;
  }
  gpu.check(gpu.api.moduleGetFunction(&function, module, name), "finding a kernel");
  if (gpu.profile)
    gpu.names[function] = name;
  return function;
}

void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                      intptr_t blockX, intptr_t blockY, intptr_t blockZ, int32_t smem,
                      void *stream, void **params, void **extra, size_t) {
  GPURuntime &gpu = GPURuntime::get();
  if (!function || !gpu.error.empty())
    return; // the first error is kept; later launches would only add noise
  if (gridX <= 0 || gridY <= 0 || gridZ <= 0)
    return; // nothing to do (an empty range, e.g. an expert no token chose)
  // Kernels map their outer loops (such as the tokens of a run) to grid y
  // and z, which hold at most 65535 blocks.
  if (gridY > 65535 || gridZ > 65535) {
    gpu.record("a kernel needs a grid of " + std::to_string(gridX) + " x " + std::to_string(gridY) +
               " x " + std::to_string(gridZ) +
               " blocks (y and z at most 65535): run fewer tokens at once");
    return;
  }
  double start = 0;
  if (gpu.profile) {
    gpu.api.streamSynchronize(stream);
    start = gpu.now();
  }
  gpu.lineValid = false;
  gpu.check(gpu.api.launchKernel(function, gridX, gridY, gridZ, blockX, blockY, blockZ, smem,
                                     stream, params, extra),
             "launching a kernel");
  if (gpu.profile) {
    gpu.api.streamSynchronize(stream);
    GPURuntime::Sample &sample = gpu.samples[gpu.names[function]];
    sample.seconds += gpu.now() - start;
    ++sample.calls;
  }
}

void *mgpuStreamCreate() { return GPURuntime::get().stream; }
void mgpuStreamDestroy(void *) {}
// The code waits for its stream at the end of every function (each decoder
// layer). With one in-order stream nothing on the host needs that: host reads,
// downloads and the end of a run synchronize themselves, and a pooled buffer
// is only reused by later work on the same stream. Skipping the wait keeps
// the GPU fed across layer boundaries.
void mgpuStreamSynchronize(void *) {}
// One stream: events order nothing that the stream does not already order.
void *mgpuEventCreate() { return nullptr; }
void mgpuEventDestroy(void *) {}
void mgpuEventSynchronize(void *) { mgpuStreamSynchronize(GPURuntime::get().stream); }
void mgpuEventRecord(void *, void *) {}
void mgpuStreamWaitEvent(void *, void *) {}

void *mgpuMemAlloc(uint64_t bytes, void *, bool) { return GPURuntime::get().allocate(bytes); }
void mgpuMemFree(void *ptr, void *) { GPURuntime::get().release(ptr); }
void mgpuMemcpy(void *dst, void *src, size_t bytes, void *stream) {
  GPURuntime &gpu = GPURuntime::get();
  gpu.lineValid = false;
  gpu.check(gpu.api.memcpyDtoDAsync(dptr(dst), dptr(src), bytes, stream), "copying on the device");
}
void mgpuMemset32(void *dst, unsigned value, size_t count, void *stream) {
  GPURuntime &gpu = GPURuntime::get();
  gpu.lineValid = false;
  gpu.check(gpu.api.memsetD32Async(dptr(dst), value, count, stream), "filling device memory");
}
void mgpuMemset16(void *dst, unsigned short value, size_t count, void *stream) {
  GPURuntime &gpu = GPURuntime::get();
  gpu.lineValid = false;
  gpu.check(gpu.api.memsetD16Async(dptr(dst), value, count, stream), "filling device memory");
}

uint32_t moir_gpu_read_b32(intptr_t address) {
  GPURuntime &gpu = GPURuntime::get();
  HostReadTimer timer(gpu);
  uint32_t value = gpu.read<uint32_t>(address);
  return value;
}

uint64_t moir_gpu_read_b64(intptr_t address) {
  GPURuntime &gpu = GPURuntime::get();
  HostReadTimer timer(gpu);
  uint64_t value = gpu.read<uint64_t>(address);
  return value;
}

void moir_gpu_read_block(intptr_t host, intptr_t device, intptr_t bytes) {
  GPURuntime &gpu = GPURuntime::get();
  HostReadTimer timer(gpu);
  gpu.check(gpu.api.streamSynchronize(gpu.stream), "synchronizing the stream");
  gpu.check(gpu.api.memcpyDtoH(reinterpret_cast<void *>(host), static_cast<DevicePtr>(device),
                               static_cast<size_t>(bytes)),
            "reading a device buffer");
}

} // extern "C"
