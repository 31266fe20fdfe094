/* Exercises the runtime's C API from C, as a user of the header would. */
#include "moir/runtime.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

/* FNV-1a, the artifact's checksum. */
static uint64_t fnv1a64(const unsigned char *data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* Writes a small artifact for `target` whose code is not a shared object:
 * opening it reaches the driver the target names, which then fails. */
static void write_artifact(const char *path, const char *target) {
  static const unsigned char code[16] = "not an ELF file";
  char manifest[512];
  int manifestBytes = snprintf(
      manifest, sizeof manifest,
      "moir-artifact 1\ntarget %s\nmodel Test vocab 4 layers 1 capacity 8\n"
      "entry moir_forward\narg 0 tokens i32 1 -1\narg 1 positions i64 1 -1\n"
      "arg 2 offset index 0\narg 3 logits f32 2 -1 4\n"
      "checksum code %016llx weights %016llx\n",
      target, (unsigned long long)fnv1a64(code, sizeof code),
      (unsigned long long)fnv1a64(NULL, 0));
  uint64_t header[8] = {0};
  memcpy(header, "MOIRART\0", 8);
  uint32_t versionAndSize[2] = {1, 64};
  memcpy(&header[1], versionAndSize, sizeof versionAndSize);
  uint64_t codeOffset = 64 + (uint64_t)manifestBytes;
  header[2] = 64;
  header[3] = (uint64_t)manifestBytes;
  header[4] = codeOffset;
  header[5] = sizeof code;
  header[6] = (codeOffset + sizeof code + 63) / 64 * 64; /* weights: empty */
  header[7] = 0;
  FILE *f = fopen(path, "wb");
  fwrite(header, 1, sizeof header, f);
  fwrite(manifest, 1, (size_t)manifestBytes, f);
  fwrite(code, 1, sizeof code, f);
  for (uint64_t at = codeOffset + sizeof code; at < header[6]; ++at)
    fputc(0, f);
  fclose(f);
}

/* Opens an artifact for `target`; returns the status, the error in `error`. */
static moir_status open_target(const char *dir, const char *target, char *path, size_t pathSize) {
  snprintf(path, pathSize, "%s/runtime_test_target.moir", dir);
  write_artifact(path, target);
  moir_model *model = NULL;
  moir_status status = moir_model_open(path, &model);
  moir_model_close(model);
  return status;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  char path[4096];
  moir_mapped_file file;

  /* A file that exists maps with its exact bytes. */
  snprintf(path, sizeof path, "%s/runtime_test_data.bin", dir);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  unsigned char bytes[300];
  for (int i = 0; i < 300; ++i)
    bytes[i] = (unsigned char)(i * 7 + 3);
  fwrite(bytes, 1, sizeof bytes, f);
  fclose(f);
  CHECK(moir_map_file(path, &file) == MOIR_OK);
  CHECK(file.size == sizeof bytes);
  CHECK(file.data && memcmp(file.data, bytes, sizeof bytes) == 0);
  CHECK(strcmp(moir_last_error(), "") == 0);
  moir_unmap_file(&file);
  CHECK(file.data == NULL && file.size == 0);

  /* A missing file is an I/O error naming the file. */
  snprintf(path, sizeof path, "%s/does-not-exist.moir", dir);
  CHECK(moir_map_file(path, &file) == MOIR_ERROR_IO);
  CHECK(strstr(moir_last_error(), "does-not-exist.moir") != NULL);
  CHECK(strcmp(moir_status_name(MOIR_ERROR_IO), "MOIR_ERROR_IO") == 0);

  /* An empty file is a format error, not a zero-length mapping. */
  snprintf(path, sizeof path, "%s/runtime_test_empty.bin", dir);
  f = fopen(path, "wb");
  fclose(f);
  CHECK(moir_map_file(path, &file) == MOIR_ERROR_FORMAT);
  CHECK(strstr(moir_last_error(), "empty") != NULL);

  CHECK(moir_map_file(NULL, &file) == MOIR_ERROR_INVALID_ARGUMENT);

  /* The target's first word picks the driver. An unknown one names the
   * file and the target and lists the drivers there are. */
  moir_status status = open_target(dir, "tpu v5e", path, sizeof path);
  CHECK(status == MOIR_ERROR_UNSUPPORTED);
  CHECK(strstr(moir_last_error(), path) != NULL);
  CHECK(strstr(moir_last_error(), "target 'tpu v5e'") != NULL);
  CHECK(strstr(moir_last_error(), "cpu (host code), nvidia (CUDA), amd (HIP)") != NULL);
  /* A prefix of a driver's name is not that driver. */
  CHECK(open_target(dir, "cpux86 x", path, sizeof path) == MOIR_ERROR_UNSUPPORTED);
  /* Inspection loads no code, so it needs no driver. */
  moir_model *inspected = NULL;
  CHECK(moir_model_open_for_inspection(path, &inspected) == MOIR_OK);
  moir_model_close(inspected);
  /* cpu reaches the CPU driver: it refuses code that is no shared object. */
  CHECK(open_target(dir, "cpu x86_64-unknown-linux-gnu generic", path, sizeof path) ==
        MOIR_ERROR_FORMAT);
  CHECK(strstr(moir_last_error(), "cannot load the compiled code") != NULL);
  /* nvidia reaches CUDA and amd HIP: without the library the driver says
   * which is missing; with it (a GPU machine), loading the code fails. */
  status = open_target(dir, "nvidia sm_90", path, sizeof path);
  CHECK((status == MOIR_ERROR_DEVICE && strstr(moir_last_error(), "no CUDA driver")) ||
        (status == MOIR_ERROR_FORMAT && strstr(moir_last_error(), "compiled code")));
  status = open_target(dir, "amd gfx942", path, sizeof path);
  CHECK((status == MOIR_ERROR_DEVICE && (strstr(moir_last_error(), "no HIP driver") ||
                                         strstr(moir_last_error(), "already runs CUDA"))) ||
        (status == MOIR_ERROR_FORMAT && strstr(moir_last_error(), "compiled code")));

  if (failures)
    return 1;
  printf("runtime C API: all checks passed\n");
  return 0;
}
