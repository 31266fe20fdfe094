//===- Importer.h - checkpoints to MoIR's input IR --------------*- C++ -*-===//

#ifndef MOIR_FRONTEND_IMPORTER_H
#define MOIR_FRONTEND_IMPORTER_H

#include "moir/Frontend/ModelConfig.h"
#include "moir/Frontend/WeightStore.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace moir::frontend {

struct ImportOptions {
  /// Rows of the KV cache the model function takes (its capacity).
  int64_t cacheCapacity = 4096;
  /// Type for float weight matrices (rank >= 2): empty keeps the stored
  /// type; "bf16", "f16" or "f32" asks for a conversion, "q8_0", "q4_k",
  /// "q6_k", "int4" or "fp8" for quantization, which the artifact writer
  /// performs while packing (Quantization.h). K-quants fall back to q8_0 for
  /// matrices whose rows are not a multiple of 256, and everything to float
  /// where rows are not a multiple of 32. Vectors (norms, biases) keep their
  /// stored type; the MoE router is converted (bf16, f16) but not quantized.
  std::string weightType;
  /// Per-tensor exceptions, "<regex>=<type>,...": the first regex found in a
  /// tensor's name picks its type (one of weightType's), router included.
  std::string weightTypeOverrides;
};

/// Imports `path`: a Hugging Face checkpoint directory (config.json plus
/// model.safetensors, or shards listed in model.safetensors.index.json) or a
/// GGUF file. The module's `@forward` takes token ids, their positions, the
/// cache write offset and the caches, and returns the logits and the updated
/// caches; weights are named into `store`, which must outlive the module's
/// use. Errors name the file and what is wrong.
llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
importModel(mlir::MLIRContext &context, llvm::StringRef path, WeightStore &store,
            const ImportOptions &options = {});

/// The pieces, for tools and tests.
llvm::Error readHFCheckpoint(llvm::StringRef dir, WeightStore &store);

} // namespace moir::frontend

#endif // MOIR_FRONTEND_IMPORTER_H
