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

/// Loaded code of one target and the memory it computes on: the CPU driver
/// (host memory) or a GPU driver (device memory; cuda_driver.cpp).
class Driver {
public:
  virtual ~Driver() = default;
  /// Calls the entry with one pointer per argument (descriptors, int64s).
  /// Returns the first error the code ran into, MOIR_OK otherwise.
  virtual moir_status call(void **args) = 0;
  /// A zero-filled buffer where the code reads and writes (null if out of
  /// memory), and its release.
  virtual void *allocate(size_t bytes) = 0;
  virtual void release(void *buffer) = 0;
  /// Whether buffers from allocate() are host memory (no copies needed).
  virtual bool hostVisible() const = 0;
  virtual moir_status upload(void *dst, const void *src, size_t bytes) = 0;
  virtual moir_status download(void *dst, const void *src, size_t bytes) = 0;
  /// The weights section as the code reads it.
  virtual const uint8_t *weights() const = 0;
};

/// Stages a shared object held in memory and loads it; `entry` is its
/// moir_forward.
moir_status loadSharedObject(const std::string &path, const uint8_t *code, size_t bytes,
                             void **handle, void (**entry)(void **));

/// Unloads what loadSharedObject loaded.
void unloadSharedObject(void *handle);

/// A region of the weights section an artifact asks to keep resident (hot
/// experts) or to read on demand (cold experts): manifest `experts` lines.
struct Residency {
  bool resident = true;
  uint64_t offset = 0, bytes = 0;
};

moir_status loadCPUDriver(const std::string &path, const uint8_t *code, size_t bytes,
                          const uint8_t *weights, size_t weightBytes,
                          const std::vector<Residency> &residency, Driver **out);

/// One component's work per token as the compiler counted it (a manifest
/// `cost` line; moir_cost in runtime.h).
struct Cost {
  std::string name;
  double decodeFlops = 0, decodeFlopsPerRow = 0, decodeBytes = 0, decodeBytesPerRow = 0;
  double prefillFlops = 0, prefillBytes = 0;
  int64_t experts = 0;
};

} // namespace moir::rt

struct moir_model;

namespace moir::rt {
/// A forward pass starts on this thread: the routing recorder numbers its
/// MoE layers from 0 again (runtime/src/routing.cpp).
void routingBeginForward();

/// The bytes of the artifact's resource NAME (mapped with the weights), or
/// false when the artifact has none.
bool findResource(const moir_model *m, const std::string &name, const char **data,
                  size_t *bytes);
} // namespace moir::rt

struct moir_model {
  moir_mapped_file file{};
  std::string path;
  std::string manifest;
  std::string target;
  int64_t vocab = 0, layers = 0, capacity = 0;
  std::vector<moir::rt::Arg> args;
  std::vector<std::string> kernels;
  /// Files packed with the model (`resource NAME OFFSET BYTES`, a region of
  /// the weights section): name -> (offset, bytes).
  std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>> resources;
  /// Expert residency (`experts resident|paged OFFSET BYTES`), in the order
  /// written; empty: every weight is mapped in at load.
  std::vector<moir::rt::Residency> residency;
  const uint8_t *weights = nullptr;
  uint64_t weightBytes = 0;
  uint64_t weightsChecksum = 0;
  uint64_t decodeWeightBytes = 0, decodeFlops = 0;
  /// The manifest's `cost` lines and the prompt of their prefill counts
  /// (`cost_model prefill_prompt N`); empty and 0 when it has none.
  std::vector<moir::rt::Cost> costs;
  int64_t costPrompt = 0;
  /// Expert or tensor parallelism (`parallel KIND ranks N rank R group G`):
  /// this is rank `rank` of `ranks`; 1 and 0 for a 1-rank artifact.
  int64_t ranks = 1, rank = 0;
  uint64_t parallelGroup = 0;
  /// "experts", "tensor" or "experts+tensor".
  std::string parallelKind;
  /// The moirc flags of such a compile, for messages.
  std::string parallelFlags() const {
    std::string n = std::to_string(ranks), flags;
    if (parallelKind != "tensor")
      flags = "--expert-parallel=" + n;
    if (parallelKind != "experts")
      flags += (flags.empty() ? "" : " ") + std::string("--tensor-parallel=") + n;
    return flags;
  }
  moir::rt::Driver *driver = nullptr;
};

#endif
