// The vendor-specific part of the GPU driver: a library, the names of the
// entry points the shared driver (gpu_driver.cpp) uses, how to open the
// device, and error texts. CUDA's driver API and HIP have the same shapes
// for everything the shared driver needs.
#ifndef MOIR_RUNTIME_GPU_DRIVER_H
#define MOIR_RUNTIME_GPU_DRIVER_H

#include "model.h"

#include <cstddef>
#include <cstdint>
#include <dlfcn.h>
#include <string>

namespace moir::rt::gpu {

/// The entry points, typed as the shared driver calls them: return codes
/// are ints (0 = success), device pointers 64-bit integers, handles void *.
struct VendorAPI {
  int (*moduleLoadData)(void **module, const void *image);
  int (*moduleUnload)(void *module);
  int (*moduleGetFunction)(void **function, void *module, const char *name);
  int (*launchKernel)(void *function, unsigned gridX, unsigned gridY, unsigned gridZ,
                      unsigned blockX, unsigned blockY, unsigned blockZ, unsigned sharedBytes,
                      void *stream, void **params, void **extra);
  int (*streamSynchronize)(void *stream);
  int (*memAlloc)(uint64_t *pointer, size_t bytes);
  int (*memFree)(uint64_t pointer);
  int (*memcpyHtoD)(uint64_t dst, const void *src, size_t bytes);
  int (*memcpyDtoH)(void *dst, uint64_t src, size_t bytes);
  int (*memcpyDtoDAsync)(uint64_t dst, uint64_t src, size_t bytes, void *stream);
  int (*memsetD8Async)(uint64_t dst, unsigned char value, size_t count, void *stream);
  int (*memsetD16Async)(uint64_t dst, unsigned short value, size_t count, void *stream);
  int (*memsetD32Async)(uint64_t dst, unsigned value, size_t count, void *stream);
};
constexpr size_t kVendorSymbols = 13;

struct Vendor {
  const char *name;    // "CUDA", "HIP"
  /// Library names to try in order ("libcuda.so.1"; "libamdhip64.so.6", ...).
  const char *libraries[3];
  /// The library's names for VendorAPI's members, in declaration order.
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
