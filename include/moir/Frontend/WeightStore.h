//===- WeightStore.h - memory-mapped checkpoint tensors ---------*- C++ -*-===//
//
// The tensors of a checkpoint, looked up by name. Files are memory-mapped and
// never read beyond their headers here: import costs memory in proportion to
// metadata, and a backend packs the bytes where they lie.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_FRONTEND_WEIGHTSTORE_H
#define MOIR_FRONTEND_WEIGHTSTORE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <functional>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moir::frontend {

/// Element formats of stored tensors: safetensors dtypes and GGUF types.
enum class DType {
  F32,
  F16,
  BF16,
  F8E4M3,
  I8,
  I32,
  I64,
  // GGUF block types (llama.cpp's ggml-common.h block structs).
  Q8_0,
  Q4_0,
  Q4_1,
  Q5_0,
  Q5_1,
  Q4_K,
  Q5_K,
  Q6_K,
};

/// Whether `dtype` is one of GGUF's block-quantized types.
bool isGGUFBlockType(DType dtype);

llvm::StringRef stringifyDType(DType dtype);
/// Elements per block (1 for plain types).
int64_t getBlockElements(DType dtype);
/// Bytes per block (the element width for plain types).
int64_t getBlockBytes(DType dtype);
/// Bytes a tensor of `elements` elements occupies, or std::nullopt when the
/// count is not a multiple of the block size or overflows.
std::optional<uint64_t> getStorageBytes(DType dtype, int64_t elements);
/// "[d0, d1, ...]", as errors print shapes.
std::string shapeString(llvm::ArrayRef<int64_t> shape);

struct TensorInfo {
  std::string name;
  DType dtype;
  /// Logical shape, outermost first (GGUF's reversed order is undone).
  llvm::SmallVector<int64_t> shape;
  /// Which file of the store, and where in it.
  unsigned file = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  /// A tensor the store computes from others (WeightStore::addDerivedTensor):
  /// its index there, or -1. `file` then names the file it is derived from.
  int derived = -1;

  int64_t getNumElements() const;
};

/// A set of mapped files and the tensors they hold.
class WeightStore {
public:
  /// Maps `path` read-only; returns its index. Errors name the file.
  llvm::Expected<unsigned> mapFile(llvm::StringRef path);
  /// Adds an in-memory file (fuzzers, tests) under the name `path`.
  unsigned addFile(std::unique_ptr<llvm::MemoryBuffer> buffer, llvm::StringRef path);

  /// Adds a tensor; a name already present is an error naming both files.
  llvm::Error addTensor(TensorInfo info);
  /// Writes a derived tensor's `info.bytes` bytes, as stored in `info.dtype`.
  using TensorProducer = std::function<void(llvm::MutableArrayRef<uint8_t>)>;
  /// Adds a tensor computed from others when first read (getData) and
  /// dropped by releaseData, so that a rearrangement of stored tensors (MLA's
  /// kv_b from llama.cpp's split halves, say) happens once, while the
  /// artifact is written, and costs one tensor of memory, not the model's.
  llvm::Error addDerivedTensor(TensorInfo info, TensorProducer produce);

  /// The tensor `name`; also "<stacked>[expert=<k>]", expert k of a stored
  /// tensor whose outermost dimension is the experts (GGUF's ffn_*_exps),
  /// made on first lookup as a view of its bytes: how expert parallelism
  /// (moe-expert-parallel) names one rank's experts of such a tensor; and
  /// "<name>[rows=<a>:<b>]", rows a to b-1 of its outermost dimension, how
  /// tensor parallelism (llm-tensor-parallel) names one rank's rows.
  const TensorInfo *lookup(llvm::StringRef name) const;
  llvm::StringRef getFilePath(unsigned file) const { return paths[file]; }
  llvm::StringRef getFileData(unsigned file) const {
    return files[file]->getBuffer();
  }
  /// The tensor's bytes, where they lie in the mapped file.
  llvm::ArrayRef<uint8_t> getData(const TensorInfo &info) const;
  /// Drops the pages wholly inside the tensor's bytes from the process's
  /// resident memory once a writer is done with them: they stay in the page
  /// cache, and a later getData() maps them back in. Streaming a checkpoint
  /// through the artifact writer so touches each page once, and the
  /// resident set stays near one tensor, not the whole file. A no-op for
  /// in-memory files.
  void releaseData(const TensorInfo &info) const;

  size_t size() const { return order.size(); }
  /// Tensors in the order they were added.
  llvm::ArrayRef<std::string> names() const { return order; }

private:
  std::vector<std::unique_ptr<llvm::MemoryBuffer>> files;
  std::vector<std::string> paths;
  /// (Mutable: a view of a derived tensor, made on lookup, is derived too.)
  mutable std::vector<TensorProducer> producers;
  mutable std::vector<std::vector<uint8_t>> produced;
  /// Mutable: lookup adds expert views.
  mutable llvm::StringMap<TensorInfo> tensors;
  std::vector<std::string> order;
};

/// An error "<file>: <message>", the form every frontend error takes.
llvm::Error fileError(llvm::StringRef file, const llvm::Twine &message);

/// Reads a safetensors file's header into `store` (tensors point into the
/// mapped file). Checks the header length, JSON, dtypes, shapes and that the
/// data offsets lie inside the file, match the shape and do not overlap.
llvm::Error readSafetensors(llvm::StringRef path, WeightStore &store);
/// The same for a file already in the store.
llvm::Error parseSafetensors(unsigned file, WeightStore &store);

} // namespace moir::frontend

#endif // MOIR_FRONTEND_WEIGHTSTORE_H
