// The CPU driver: the artifact's shared object, loaded from memory.
#include "model.h"
#include "status.h"

#include <cerrno>
#include <cstring>
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

using moir::rt::fail;

namespace {

class CPUDriver : public moir::rt::Driver {
public:
  CPUDriver(void *handle, void (*entry)(void **)) : handle(handle), entry(entry) {}
  ~CPUDriver() override { dlclose(handle); }
  void call(void **args) override { entry(args); }

private:
  void *handle;
  void (*entry)(void **);
};

} // namespace

moir_status moir::rt::loadCPUDriver(const std::string &path, const uint8_t *code,
                                    size_t bytes, Driver **out) {
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
  close(fd);
  if (!handle)
    return fail(MOIR_ERROR_FORMAT, path + ": cannot load the compiled code: " + dlerror());
  auto entry = reinterpret_cast<void (*)(void **)>(dlsym(handle, "moir_forward"));
  if (!entry) {
    dlclose(handle);
    return fail(MOIR_ERROR_FORMAT, path + ": the compiled code has no moir_forward");
  }
  *out = new CPUDriver(handle, entry);
  return MOIR_OK;
}
