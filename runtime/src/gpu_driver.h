// The vendor-specific part of the GPU driver: a library, its names for the
// entry points the shared driver (gpu_driver.cpp) uses (one list for every
// vendor, below), how to open the device, and error texts. CUDA's driver API and HIP have the same shapes
// for everything the shared driver needs.
#ifndef MOIR_RUNTIME_GPU_DRIVER_H
#define MOIR_RUNTIME_GPU_DRIVER_H

#include "model.h"

#include <cstddef>
#include <cstdint>
#include <dlfcn.h>
#include <string>

namespace moir::rt::gpu {

/// The vendor entry points the shared driver calls, written once: the member
/// of VendorAPI, its parameters, and the symbol in CUDA's driver library and
/// in HIP's. Return codes are ints (0 = success), device pointers 64-bit
/// integers, handles void *. The struct, the count and both name tables are
/// expanded from this list, so they cannot disagree.
#define MOIR_GPU_ENTRY_POINTS(X)                                                                   \
  X(moduleLoadData, (void **module, const void *image), "cuModuleLoadData", "hipModuleLoadData")   \
  X(moduleUnload, (void *module), "cuModuleUnload", "hipModuleUnload")                             \
  X(moduleGetFunction, (void **function, void *module, const char *name), "cuModuleGetFunction",   \
    "hipModuleGetFunction")                                                                        \
  X(launchKernel,                                                                                  \
    (void *function, unsigned gridX, unsigned gridY, unsigned gridZ, unsigned blockX,              \
     unsigned blockY, unsigned blockZ, unsigned sharedBytes, void *stream, void **params,          \
     void **extra),                                                                                \
    "cuLaunchKernel", "hipModuleLaunchKernel")                                                     \
  X(streamSynchronize, (void *stream), "cuStreamSynchronize", "hipStreamSynchronize")              \
  X(memAlloc, (uint64_t * pointer, size_t bytes), "cuMemAlloc_v2", "hipMalloc")                    \
  X(memFree, (uint64_t pointer), "cuMemFree_v2", "hipFree")                                        \
  X(memcpyHtoD, (uint64_t dst, const void *src, size_t bytes), "cuMemcpyHtoD_v2", "hipMemcpyHtoD") \
  X(memcpyDtoH, (void *dst, uint64_t src, size_t bytes), "cuMemcpyDtoH_v2", "hipMemcpyDtoH")       \
  X(memcpyDtoDAsync, (uint64_t dst, uint64_t src, size_t bytes, void *stream), "cuMemcpyAsync",    \
    "hipMemcpyDtoDAsync")                                                                          \
  X(memsetD8Async, (uint64_t dst, unsigned char value, size_t count, void *stream),                \
    "cuMemsetD8Async", "hipMemsetD8Async")                                                         \
  X(memsetD16Async, (uint64_t dst, unsigned short value, size_t count, void *stream),              \
    "cuMemsetD16Async", "hipMemsetD16Async")                                                       \
  X(memsetD32Async, (uint64_t dst, unsigned value, size_t count, void *stream),                    \
    "cuMemsetD32Async", "hipMemsetD32Async")

/// Expansions of MOIR_GPU_ENTRY_POINTS: one item per entry point.
#define MOIR_GPU_MEMBER(name, params, cuda, hip) int(*name) params;
#define MOIR_GPU_COUNT(name, params, cuda, hip) +1
#define MOIR_GPU_CUDA_SYMBOL(name, params, cuda, hip) cuda,
#define MOIR_GPU_HIP_SYMBOL(name, params, cuda, hip) hip,

/// The entry points, typed as the shared driver calls them.
struct VendorAPI {
  MOIR_GPU_ENTRY_POINTS(MOIR_GPU_MEMBER)
};
constexpr size_t kVendorSymbols = 0 MOIR_GPU_ENTRY_POINTS(MOIR_GPU_COUNT);

struct Vendor {
  const char *name;    // "CUDA", "HIP"
  /// Library names to try in order ("libcuda.so.1"; "libamdhip64.so.6", ...).
  const char *libraries[3];
  /// The library's names for VendorAPI's members, in declaration order
  /// (MOIR_GPU_ENTRY_POINTS expanded with MOIR_GPU_CUDA_SYMBOL or
  /// MOIR_GPU_HIP_SYMBOL).
  const char *symbols[kVendorSymbols];
  /// Initializes the first device and creates a stream; "" on success.
  std::string (*open)(void *library, std::string *deviceName, void **stream);
  std::string (*errorString)(void *library, int code);
  /// Makes the opened device current on the calling thread (sessions may
  /// run on any thread); "" on success.
  std::string (*bind)(void *library);
};

/// An entry point of a vendor library, typed.
template <typename F> F symbol(void *library, const char *name) {
  return reinterpret_cast<F>(dlsym(library, name));
}

extern const Vendor cudaVendor; // cuda_driver.cpp
extern const Vendor hipVendor;  // hip_driver.cpp

/// Opens the vendor's device, uploads the weights once and loads the host
/// code, whose constructor loads the kernels.
moir_status loadGPUDriver(const Vendor &vendor, const std::string &path,
                          const std::string &target, const uint8_t *code, size_t bytes,
                          const uint8_t *weights, uint64_t weightBytes, Driver **out);

} // namespace moir::rt::gpu

#endif
