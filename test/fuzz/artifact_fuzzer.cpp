//===- artifact_fuzzer.cpp - libFuzzer target for the artifact loader ------===//
//
// Feeds mutated artifacts to moir_model_open_for_inspection (header, manifest,
// checksums; no code is loaded) and to the signature check of
// moir_model_open_trusted, then reads back everything an inspection reads.
// Built by scripts/fuzz.sh against the runtime's own sources (no LLVM).
//
//===----------------------------------------------------------------------===//

#include "moir/runtime.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace {

/// The input as a file: one memfd, rewritten for every input.
const std::string &inputPath(const uint8_t *data, size_t size) {
  static int fd = memfd_create("artifact-fuzz", 0);
  static std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
    std::abort();
  return path;
}

/// A trusted-keys file with one key (in memory too), for the signature check.
const std::string &keysPath() {
  static std::string path = [] {
    int fd = memfd_create("artifact-fuzz-keys", 0);
    // The second key is the one in corpus/artifact/seed-signed's trailer, so
    // mutations of it reach the signature check itself.
    const char line[] = "moir-ed25519-public-key "
                        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c\n"
                        "moir-ed25519-public-key "
                        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    if (fd < 0 || write(fd, line, sizeof line - 1) != (ssize_t)(sizeof line - 1))
      std::abort();
    return "/proc/self/fd/" + std::to_string(fd);
  }();
  return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string &path = inputPath(data, size);
  moir_model *model = nullptr;
  if (moir_model_open_for_inspection(path.c_str(), &model) == MOIR_OK) {
    // Everything inspection reads, and the weights' checksum.
    if (std::strlen(moir_model_manifest(model)) == 0 || moir_model_vocab_size(model) <= 0 ||
        moir_model_capacity(model) <= 0 || moir_model_weight_bytes(model) > size)
      std::abort();
    (void)moir_model_decode_weight_bytes(model);
    (void)moir_model_decode_flops(model);
    (void)moir_model_verify_weights(model);
    moir_model_close(model);
  } else if (model || !*moir_last_error()) {
    std::abort(); // a refusal leaves no model and always says why
  }
  // The signature trailer's parser (an untrusted key: never loads code).
  model = nullptr;
  if (moir_model_open_trusted(path.c_str(), keysPath().c_str(), &model) == MOIR_OK)
    std::abort(); // nothing the fuzzer makes is signed by those keys' owners
  return 0;
}
