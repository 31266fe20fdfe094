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

  if (failures)
    return 1;
  printf("runtime C API: all checks passed\n");
  return 0;
}
