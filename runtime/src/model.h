// The runtime's view of an artifact: parsed manifest, mapped file, loaded code.
#ifndef MOIR_RUNTIME_MODEL_H
#define MOIR_RUNTIME_MODEL_H

#include "moir/runtime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moir::rt {

struct Arg {
  std::string kind;  // tokens, positions, offset, cache, weight, logits
  std::string dtype; // i32, i64, index, f32, f16, bf16
  std::vector<int64_t> shape;
  uint64_t offset = 0, bytes = 0; // weights: region in the weights section
  std::string names;
};

/// Loaded code of one target; the CPU driver is the only one so far.
class Driver {
public:
  virtual ~Driver() = default;
  /// Calls the entry with one pointer per argument (descriptors, int64s).
  virtual void call(void **args) = 0;
};

moir_status loadCPUDriver(const std::string &path, const uint8_t *code, size_t bytes,
                          Driver **out);

} // namespace moir::rt

struct moir_model {
  moir_mapped_file file{};
  std::string path;
  std::string manifest;
  std::string target;
  int64_t vocab = 0, layers = 0, capacity = 0;
  std::vector<moir::rt::Arg> args;
  const uint8_t *weights = nullptr;
  uint64_t weightBytes = 0;
  uint64_t weightsChecksum = 0;
  uint64_t decodeWeightBytes = 0, decodeFlops = 0;
  moir::rt::Driver *driver = nullptr;
};

#endif
