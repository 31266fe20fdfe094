//===- gguf_fuzzer.cpp - libFuzzer target for the GGUF reader --------------===//

#include "moir/Frontend/GGUF.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moir::frontend::WeightStore store;
  unsigned file = store.addFile(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size), "fuzz"),
      "fuzz.gguf");
  auto gguf = moir::frontend::parseGGUF(file, store);
  if (!gguf) {
    llvm::consumeError(gguf.takeError());
    return 0;
  }
  for (const std::string &name : store.names()) {
    const moir::frontend::TensorInfo *info = store.lookup(name);
    if (info->offset > size || info->bytes > size - info->offset)
      abort();
  }
  // The metadata then goes through the model-config parser.
  auto config = moir::frontend::parseGGUFConfig(*gguf, store);
  if (!config)
    llvm::consumeError(config.takeError());
  return 0;
}
