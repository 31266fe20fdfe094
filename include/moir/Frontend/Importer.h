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
  /// Element type for float weight matrices (rank >= 2): empty keeps the
  /// stored type; "bf16", "f16" or "f32" asks for a conversion, which the
  /// artifact writer performs while packing. Vectors (norms, biases) keep
  /// their stored type.
  std::string weightType;
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
