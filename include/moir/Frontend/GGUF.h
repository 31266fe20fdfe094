//===- GGUF.h - llama.cpp's GGUF format reader ------------------*- C++ -*-===//

#ifndef MOIR_FRONTEND_GGUF_H
#define MOIR_FRONTEND_GGUF_H

#include "moir/Frontend/ModelConfig.h"
#include "moir/Frontend/WeightStore.h"

#include "llvm/ADT/StringMap.h"

#include <variant>

namespace moir::frontend {

/// One metadata value. Numeric arrays are kept (per-layer hyperparameters);
/// string arrays are only counted, except the tokenizer's ("tokenizer.*"
/// keys: the vocabulary and merges), which moirc packs into the artifact.
struct GGUFValue {
  enum class Kind { Unsigned, Signed, Float, Bool, String, Array } kind;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  uint32_t elementType = 0;
  uint64_t count = 0;
  std::vector<double> numbers;
  std::vector<std::string> strings;

  /// The value as an integer if it is one (or a bool).
  std::optional<int64_t> getInteger() const;
  /// The value as a number if it is one.
  std::optional<double> getNumber() const;
};

struct GGUFFile {
  std::string path;
  uint32_t version = 0;
  uint64_t alignment = 32;
  llvm::StringMap<GGUFValue> metadata;

  const GGUFValue *get(llvm::StringRef key) const;
};

/// Reads a GGUF (v2/v3) file: metadata into the result, tensor infos into
/// `store`, data left mapped. Every count, length and offset is checked
/// against the file size before it is used.
llvm::Expected<GGUFFile> readGGUF(llvm::StringRef path, WeightStore &store);
/// The same for a file already in the store.
llvm::Expected<GGUFFile> parseGGUF(unsigned file, WeightStore &store);

/// The model configuration from GGUF metadata (and tensor presence, as
/// llama.cpp infers biases and dense layers).
llvm::Expected<ModelConfig> parseGGUFConfig(const GGUFFile &file,
                                            const WeightStore &store);

} // namespace moir::frontend

#endif // MOIR_FRONTEND_GGUF_H
