//===- safetensors_fuzzer.cpp - libFuzzer target for the safetensors reader ===//

#include "moir/Frontend/WeightStore.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moir::frontend::WeightStore store;
  unsigned file = store.addFile(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size), "fuzz"),
      "fuzz.safetensors");
  if (llvm::Error err = moir::frontend::parseSafetensors(file, store)) {
    llvm::consumeError(std::move(err));
    return 0;
  }
  // What the reader accepted must lie inside the file.
  for (const std::string &name : store.names()) {
    const moir::frontend::TensorInfo *info = store.lookup(name);
    if (info->offset > size || info->bytes > size - info->offset)
      abort();
  }
  return 0;
}
