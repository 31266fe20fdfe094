// AMD: HIP (libamdhip64.so) behind the shared GPU driver. Not yet run on
// AMD hardware (none on the project's machines).
#include "gpu_driver.h"

namespace {

using moir::rt::gpu::symbol;

std::string errorString(void *library, int code) {
  auto get = symbol<const char *(*)(int)>(library, "hipGetErrorString");
  const char *text = get ? get(code) : nullptr;
  return text ? text : "HIP error " + std::to_string(code);
}

std::string open(void *library, std::string *deviceName, void **stream) {
  auto init = symbol<int (*)(unsigned)>(library, "hipInit");
  auto setDevice = symbol<int (*)(int)>(library, "hipSetDevice");
  auto getName = symbol<int (*)(char *, int, int)>(library, "hipDeviceGetName");
  auto streamCreate = symbol<int (*)(void **)>(library, "hipStreamCreate");
  if (!init || !setDevice || !getName || !streamCreate)
    return "libamdhip64.so lacks the device entry points";
  int rc = 0;
  char name[256] = {0};
  if ((rc = init(0)) || (rc = setDevice(0)))
    return "no HIP device: " + errorString(library, rc);
  getName(name, sizeof name - 1, 0);
  *deviceName = name;
  if ((rc = streamCreate(stream)))
    return "cannot open " + *deviceName + ": " + errorString(library, rc);
  return "";
}

std::string bind(void *library) {
  static auto setDevice = symbol<int (*)(int)>(library, "hipSetDevice");
  int rc = setDevice(0);
  return rc ? "hipSetDevice failed: " + errorString(library, rc) : "";
}

} // namespace

const moir::rt::gpu::Vendor moir::rt::gpu::hipVendor = {
    "HIP",
    {"libamdhip64.so.6", "libamdhip64.so.5", "libamdhip64.so"},
    {MOIR_GPU_ENTRY_POINTS(MOIR_GPU_HIP_SYMBOL)},
    open,
    errorString,
    bind,
};
