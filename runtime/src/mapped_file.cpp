// Read-only file mapping for artifacts: weights are used where they lie.
#include "status.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using moir::rt::fail;

extern "C" moir_status moir_map_file(const char *path, moir_mapped_file *out) {
  if (!path || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_map_file: null argument");
  out->data = nullptr;
  out->size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(MOIR_ERROR_IO, std::string(path) + ": cannot open: " +
                                   std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return fail(MOIR_ERROR_IO, std::string(path) + ": cannot stat: " +
                                   std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return fail(MOIR_ERROR_IO, std::string(path) + ": not a regular file");
  }
  if (st.st_size == 0) {
    close(fd);
    return fail(MOIR_ERROR_FORMAT, std::string(path) + ": file is empty");
  }
  void *data = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                    MAP_PRIVATE, fd, 0);
  int err = errno;
  close(fd);
  if (data == MAP_FAILED)
    return fail(MOIR_ERROR_IO, std::string(path) + ": cannot map: " +
                                   std::strerror(err));
  out->data = static_cast<const uint8_t *>(data);
  out->size = static_cast<size_t>(st.st_size);
  return moir::rt::ok();
}

extern "C" void moir_unmap_file(moir_mapped_file *file) {
  if (!file || !file->data)
    return;
  munmap(const_cast<uint8_t *>(file->data), file->size);
  file->data = nullptr;
  file->size = 0;
}
