//===- config_fuzzer.cpp - libFuzzer target for the config.json parser -----===//

#include "moir/Frontend/ModelConfig.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto config = moir::frontend::parseHFConfigText(
      "fuzz/config.json", llvm::StringRef(reinterpret_cast<const char *>(data), size));
  if (!config)
    llvm::consumeError(config.takeError());
  return 0;
}
