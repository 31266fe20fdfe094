/*===- moir/runtime.h - MoIR runtime C API ---------------------------------===
 *
 * The one header of MoIR's runtime. Plain C, no MLIR/LLVM dependency.
 * Functions return a moir_status; on failure moir_last_error() describes the
 * problem (naming the file and what is wrong) until the next call on the
 * same thread.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOIR_RUNTIME_H
#define MOIR_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOIR_RUNTIME_VERSION_MAJOR 0
#define MOIR_RUNTIME_VERSION_MINOR 1

typedef enum moir_status {
  MOIR_OK = 0,
  MOIR_ERROR_INVALID_ARGUMENT = 1,
  MOIR_ERROR_IO = 2,
  MOIR_ERROR_FORMAT = 3,
  MOIR_ERROR_OUT_OF_RANGE = 4,
  MOIR_ERROR_UNSUPPORTED = 5,
} moir_status;

/* Human-readable description of the last failure on this thread ("" if none). */
const char *moir_last_error(void);

/* Name of a status code, e.g. "MOIR_ERROR_IO". */
const char *moir_status_name(moir_status status);

/* A read-only memory-mapped file: artifacts and weights are mapped, never
 * copied. */
typedef struct moir_mapped_file {
  const uint8_t *data;
  size_t size;
} moir_mapped_file;

moir_status moir_map_file(const char *path, moir_mapped_file *out);
void moir_unmap_file(moir_mapped_file *file);

#ifdef __cplusplus
}
#endif

#endif /* MOIR_RUNTIME_H */
