// The CUDA driver. libcuda.so.1 is opened with dlopen and used through a
// table of entry points, so the runtime builds and runs without the CUDA SDK.
// The compiled host code calls the mgpu* functions below (the names MLIR's
// gpu-to-llvm lowering emits); moir_gpu_read_b32/_b64 read one element the
// host code branches on. Everything runs on one stream, in order; device
// buffers are pooled by size, so a step's temporaries cost no cuMemAlloc.
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

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = void *;
using CUmodule = void *;
using CUfunction = void *;
using CUstream = void *;

struct CudaAPI {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
  CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, CUstream);
  CUresult (*cuGetErrorString)(CUresult, const char **);
};

struct Symbol {
  const char *name;
  void **slot;
};

/// Process-wide CUDA state: one context (the device's primary one), one
/// stream, a pool of device buffers and the first error since it was read.
struct Cuda {
  void *library = nullptr;
  CudaAPI api{};
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  std::string deviceName;
  std::string error;
  std::mutex mutex;
  std::unordered_map<CUdeviceptr, size_t> live;
  std::multimap<size_t, CUdeviceptr> idle;

  /// Host reads fetch the 256-byte line around the element and serve later
  /// reads of that line from it until the device next runs anything (the
  /// expert loop reads row offsets of many experts between launches). Every
  /// buffer starts on a 256-byte boundary and spans whole lines, so the line
  /// never leaves its allocation.
  static constexpr uintptr_t kLine = 256;
  alignas(16) uint8_t line[kLine];
  CUdeviceptr lineBase = 0;
  bool lineValid = false;

  template <typename T> T read(intptr_t address) {
    auto base = static_cast<CUdeviceptr>(address) & ~CUdeviceptr(kLine - 1);
    if (!lineValid || base != lineBase) {
      check(api.cuStreamSynchronize(stream), "cuStreamSynchronize");
      if (!check(api.cuMemcpyDtoH(line, base, kLine), "reading a device value"))
        return T();
      lineBase = base;
      lineValid = true;
    }
    T value;
    std::memcpy(&value, line + (static_cast<CUdeviceptr>(address) - base), sizeof value);
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

  static Cuda &get() {
    static Cuda cuda;
    return cuda;
  }

  ~Cuda() {
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

  bool check(CUresult result, const char *what) {
    if (result == 0)
      return true;
    const char *text = nullptr;
    if (api.cuGetErrorString)
      api.cuGetErrorString(result, &text);
    record(std::string(what) + " failed: " + (text ? text : "CUDA error " + std::to_string(result)));
    return false;
  }

  /// Opens the library, the device and the stream; "" on success.
  std::string init() {
    if (stream)
      return "";
    library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library)
      return "no NVIDIA driver: cannot load libcuda.so.1 (" + std::string(dlerror()) + ")";
    const Symbol symbols[] = {
        {"cuInit", (void **)&api.cuInit},
        {"cuDeviceGet", (void **)&api.cuDeviceGet},
        {"cuDeviceGetName", (void **)&api.cuDeviceGetName},
        {"cuDevicePrimaryCtxRetain", (void **)&api.cuDevicePrimaryCtxRetain},
        {"cuCtxSetCurrent", (void **)&api.cuCtxSetCurrent},
        {"cuModuleLoadData", (void **)&api.cuModuleLoadData},
        {"cuModuleUnload", (void **)&api.cuModuleUnload},
        {"cuModuleGetFunction", (void **)&api.cuModuleGetFunction},
        {"cuLaunchKernel", (void **)&api.cuLaunchKernel},
        {"cuStreamCreate", (void **)&api.cuStreamCreate},
        {"cuStreamSynchronize", (void **)&api.cuStreamSynchronize},
        {"cuMemAlloc_v2", (void **)&api.cuMemAlloc},
        {"cuMemFree_v2", (void **)&api.cuMemFree},
        {"cuMemcpyHtoD_v2", (void **)&api.cuMemcpyHtoD},
        {"cuMemcpyDtoH_v2", (void **)&api.cuMemcpyDtoH},
        {"cuMemcpyAsync", (void **)&api.cuMemcpyAsync},
        {"cuMemsetD8Async", (void **)&api.cuMemsetD8Async},
        {"cuMemsetD32Async", (void **)&api.cuMemsetD32Async},
        {"cuMemsetD16Async", (void **)&api.cuMemsetD16Async},
        {"cuGetErrorString", (void **)&api.cuGetErrorString},
    };
    for (const Symbol &s : symbols) {
      *s.slot = dlsym(library, s.name);
      if (!*s.slot)
        return std::string("libcuda.so.1 lacks ") + s.name;
    }
    if (!check(api.cuInit(0), "cuInit"))
      return error;
    CUdevice device = 0;
    if (!check(api.cuDeviceGet(&device, 0), "cuDeviceGet (no CUDA device?)"))
      return error;
    char name[256] = {0};
    api.cuDeviceGetName(name, sizeof name - 1, device);
    deviceName = name;
    if (!check(api.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain") ||
        !check(api.cuCtxSetCurrent(context), "cuCtxSetCurrent") ||
        !check(api.cuStreamCreate(&stream, 0), "cuStreamCreate"))
      return error;
    return "";
  }

  void *allocate(size_t bytes) {
    size_t rounded = (bytes + 255) / 256 * 256;
    if (!rounded)
      rounded = 256;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = idle.find(rounded);
    CUdeviceptr p = 0;
    if (it != idle.end()) {
      p = it->second;
      idle.erase(it);
    } else if (api.cuMemAlloc(&p, rounded) != 0) {
      // Out of memory: give the pooled buffers back and try once more.
      api.cuStreamSynchronize(stream);
      for (auto &[size, q] : idle)
        api.cuMemFree(q);
      idle.clear();
      if (!check(api.cuMemAlloc(&p, rounded), "cuMemAlloc"))
        return nullptr;
    }
    live[p] = rounded;
    return reinterpret_cast<void *>(p);
  }

  void release(void *buffer) {
    if (!buffer)
      return;
    std::lock_guard<std::mutex> lock(mutex);
    auto p = reinterpret_cast<CUdeviceptr>(buffer);
    auto it = live.find(p);
    if (it == live.end())
      return;
    // Stream order makes reuse safe: later work on the one stream runs after
    // every kernel that used the buffer.
    idle.emplace(it->second, p);
    live.erase(it);
  }
};

CUdeviceptr dptr(const void *p) { return reinterpret_cast<CUdeviceptr>(p); }

class CUDADriver : public moir::rt::Driver {
public:
  CUDADriver(void *weights) : weightsBase(static_cast<uint8_t *>(weights)) {}
  ~CUDADriver() override {
    if (handle)
      dlclose(handle);
    Cuda::get().release(weightsBase);
  }
  void setCode(void *h, void (*e)(void **)) {
    handle = h;
    entry = e;
  }

  moir_status call(void **args) override {
    Cuda &cuda = Cuda::get();
    entry(args);
    cuda.check(cuda.api.cuStreamSynchronize(cuda.stream), "running the model");
    return takeError();
  }
  void *allocate(size_t bytes) override {
    Cuda &cuda = Cuda::get();
    void *p = cuda.allocate(bytes);
    cuda.lineValid = false;
    if (p)
      cuda.check(cuda.api.cuMemsetD8Async(dptr(p), 0, bytes, cuda.stream), "cuMemsetD8");
    return p;
  }
  void release(void *buffer) override { Cuda::get().release(buffer); }
  bool hostVisible() const override { return false; }
  moir_status upload(void *dst, const void *src, size_t bytes) override {
    Cuda &cuda = Cuda::get();
    cuda.check(cuda.api.cuStreamSynchronize(cuda.stream), "cuStreamSynchronize");
    cuda.lineValid = false;
    cuda.check(cuda.api.cuMemcpyHtoD(dptr(dst), src, bytes), "cuMemcpyHtoD");
    return takeError();
  }
  moir_status download(void *dst, const void *src, size_t bytes) override {
    Cuda &cuda = Cuda::get();
    cuda.check(cuda.api.cuStreamSynchronize(cuda.stream), "cuStreamSynchronize");
    cuda.check(cuda.api.cuMemcpyDtoH(dst, dptr(src), bytes), "cuMemcpyDtoH");
    return takeError();
  }
  const uint8_t *weights() const override { return weightsBase; }

  static moir_status takeError() {
    Cuda &cuda = Cuda::get();
    if (cuda.error.empty())
      return MOIR_OK;
    std::string message = "CUDA (" + cuda.deviceName + "): " + cuda.error;
    cuda.error.clear();
    return fail(MOIR_ERROR_DEVICE, message);
  }

private:
  uint8_t *weightsBase;
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
};

} // namespace

moir_status moir::rt::loadCUDADriver(const std::string &path, const std::string &target,
                                     const uint8_t *code, size_t bytes, const uint8_t *weights,
                                     uint64_t weightBytes, Driver **out) {
  Cuda &cuda = Cuda::get();
  if (std::string why = cuda.init(); !why.empty()) {
    cuda.error.clear();
    return fail(MOIR_ERROR_DEVICE, path + ": cannot run target '" + target + "': " + why);
  }
  // The weights go to the device once and stay there.
  void *deviceWeights = cuda.allocate(weightBytes);
  if (!deviceWeights || !cuda.check(cuda.api.cuMemcpyHtoD(dptr(deviceWeights), weights, weightBytes),
                                    "uploading the weights")) {
    cuda.release(deviceWeights);
    std::string why = cuda.error;
    cuda.error.clear();
    return fail(MOIR_ERROR_DEVICE, path + ": " + std::to_string(weightBytes) +
                                       " bytes of weights do not fit on " + cuda.deviceName +
                                       ": " + why);
  }
  auto driver = std::make_unique<CUDADriver>(deviceWeights);
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
  // Loading the host code loads its kernels (a constructor calls
  // mgpuModuleLoad): errors land in the CUDA state.
  if (moir_status s = loadSharedObject(path, code, bytes, &handle, &entry); s != MOIR_OK)
    return s;
  driver->setCode(handle, entry);
  if (!cuda.error.empty()) {
    std::string why = cuda.error;
    cuda.error.clear();
    return fail(MOIR_ERROR_DEVICE, path + ": cannot load the kernels for '" + target +
                                       "' on " + cuda.deviceName + ": " + why);
  }
  *out = driver.release();
  return MOIR_OK;
}

// ---- what the compiled host code calls --------------------------------------

extern "C" {

void *mgpuModuleLoad(void *data, size_t) {
  Cuda &cuda = Cuda::get();
  CUmodule module = nullptr;
  if (!cuda.stream) {
    cuda.record("kernels loaded before the CUDA driver");
    return nullptr;
  }
  cuda.check(cuda.api.cuModuleLoadData(&module, data), "cuModuleLoadData");
  return module;
}

void mgpuModuleUnload(void *module) {
  Cuda &cuda = Cuda::get();
  if (module && cuda.api.cuModuleUnload)
    cuda.api.cuModuleUnload(module);
}

void *mgpuModuleGetFunction(void *module, const char *name) {
  Cuda &cuda = Cuda::get();
  CUfunction function = nullptr;
  if (!module) {
    cuda.record(std::string("kernel ") + name + " requested from a module that did not load");
    return nullptr;
  }
  cuda.check(cuda.api.cuModuleGetFunction(&function, module, name), "cuModuleGetFunction");
  if (cuda.profile)
    cuda.names[function] = name;
  return function;
}

void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                      intptr_t blockX, intptr_t blockY, intptr_t blockZ, int32_t smem,
                      void *stream, void **params, void **extra, size_t) {
  Cuda &cuda = Cuda::get();
  if (!function || !cuda.error.empty())
    return; // the first error is kept; later launches would only add noise
  if (gridX <= 0 || gridY <= 0 || gridZ <= 0)
    return; // nothing to do (an empty range, e.g. an expert no token chose)
  double start = 0;
  if (cuda.profile) {
    cuda.api.cuStreamSynchronize(stream);
    start = cuda.now();
  }
  cuda.lineValid = false;
  cuda.check(cuda.api.cuLaunchKernel(function, gridX, gridY, gridZ, blockX, blockY, blockZ, smem,
                                     stream, params, extra),
             "cuLaunchKernel");
  if (cuda.profile) {
    cuda.api.cuStreamSynchronize(stream);
    char shape[96];
    std::snprintf(shape, sizeof shape, " <<<%ld,%ld,%ld x %ld,%ld,%ld>>>", (long)gridX, (long)gridY,
                  (long)gridZ, (long)blockX, (long)blockY, (long)blockZ);
    Cuda::Sample &sample = cuda.samples[cuda.names[function] + shape];
    sample.seconds += cuda.now() - start;
    ++sample.calls;
  }
}

void *mgpuStreamCreate() { return Cuda::get().stream; }
void mgpuStreamDestroy(void *) {}
void mgpuStreamSynchronize(void *stream) {
  Cuda &cuda = Cuda::get();
  cuda.check(cuda.api.cuStreamSynchronize(stream), "cuStreamSynchronize");
}
// One stream: events order nothing that the stream does not already order.
void *mgpuEventCreate() { return nullptr; }
void mgpuEventDestroy(void *) {}
void mgpuEventSynchronize(void *) { mgpuStreamSynchronize(Cuda::get().stream); }
void mgpuEventRecord(void *, void *) {}
void mgpuStreamWaitEvent(void *, void *) {}

void *mgpuMemAlloc(uint64_t bytes, void *, bool) { return Cuda::get().allocate(bytes); }
void mgpuMemFree(void *ptr, void *) { Cuda::get().release(ptr); }
void mgpuMemcpy(void *dst, void *src, size_t bytes, void *stream) {
  Cuda &cuda = Cuda::get();
  cuda.lineValid = false;
  cuda.check(cuda.api.cuMemcpyAsync(dptr(dst), dptr(src), bytes, stream), "cuMemcpyAsync");
}
void mgpuMemset32(void *dst, unsigned value, size_t count, void *stream) {
  Cuda &cuda = Cuda::get();
  cuda.lineValid = false;
  cuda.check(cuda.api.cuMemsetD32Async(dptr(dst), value, count, stream), "cuMemsetD32Async");
}
void mgpuMemset16(void *dst, unsigned short value, size_t count, void *stream) {
  Cuda &cuda = Cuda::get();
  cuda.lineValid = false;
  cuda.check(cuda.api.cuMemsetD16Async(dptr(dst), value, count, stream), "cuMemsetD16Async");
}

uint32_t moir_gpu_read_b32(intptr_t address) {
  Cuda &cuda = Cuda::get();
  double start = cuda.profile ? cuda.now() : 0;
  uint32_t value = cuda.read<uint32_t>(address);
  if (cuda.profile) {
    Cuda::Sample &sample = cuda.samples["host read (stream synchronization)"];
    sample.seconds += cuda.now() - start;
    ++sample.calls;
  }
  return value;
}

uint64_t moir_gpu_read_b64(intptr_t address) {
  Cuda &cuda = Cuda::get();
  double start = cuda.profile ? cuda.now() : 0;
  uint64_t value = cuda.read<uint64_t>(address);
  if (cuda.profile) {
    Cuda::Sample &sample = cuda.samples["host read (stream synchronization)"];
    sample.seconds += cuda.now() - start;
    ++sample.calls;
  }
  return value;
}

} // extern "C"
