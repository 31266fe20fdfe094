// NVIDIA: the CUDA driver API (libcuda.so.1) behind the shared GPU driver.
#include "gpu_driver.h"

namespace {

using moir::rt::gpu::symbol;

std::string errorString(void *library, int code) {
  auto get = symbol<int (*)(int, const char **)>(library, "cuGetErrorString");
  const char *text = nullptr;
  if (get)
    get(code, &text);
  return text ? text : "CUDA error " + std::to_string(code);
}

void *context = nullptr; // the device's primary context, once opened

std::string open(void *library, std::string *deviceName, void **stream) {
  auto init = symbol<int (*)(unsigned)>(library, "cuInit");
  auto deviceGet = symbol<int (*)(int *, int)>(library, "cuDeviceGet");
  auto getName = symbol<int (*)(char *, int, int)>(library, "cuDeviceGetName");
  auto retain = symbol<int (*)(void **, int)>(library, "cuDevicePrimaryCtxRetain");
  auto setCurrent = symbol<int (*)(void *)>(library, "cuCtxSetCurrent");
  auto streamCreate = symbol<int (*)(void **, unsigned)>(library, "cuStreamCreate");
  if (!init || !deviceGet || !getName || !retain || !setCurrent || !streamCreate)
    return "libcuda.so.1 lacks the context entry points";
  int device = 0, rc = 0;
  char name[256] = {0};
  if ((rc = init(0)) || (rc = deviceGet(&device, 0)))
    return "no CUDA device: " + errorString(library, rc);
  getName(name, sizeof name - 1, device);
  *deviceName = name;
  if ((rc = retain(&context, device)) || (rc = setCurrent(context)) ||
      (rc = streamCreate(stream, 0)))
    return "cannot open " + *deviceName + ": " + errorString(library, rc);
  return "";
}

std::string bind(void *library) {
  static auto setCurrent = symbol<int (*)(void *)>(library, "cuCtxSetCurrent");
  int rc = setCurrent(context);
  return rc ? "cuCtxSetCurrent failed: " + errorString(library, rc) : "";
}

} // namespace

const moir::rt::gpu::Vendor moir::rt::gpu::cudaVendor = {
    "CUDA",
    {"libcuda.so.1", nullptr, nullptr},
    {MOIR_GPU_ENTRY_POINTS(MOIR_GPU_CUDA_SYMBOL)},
    open,
    errorString,
    bind,
};
