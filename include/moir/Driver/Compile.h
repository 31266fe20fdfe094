//===- Compile.h - whole compiles, as moirc runs them -----------*- C++ -*-===//

#ifndef MOIR_DRIVER_COMPILE_H
#define MOIR_DRIVER_COMPILE_H

#include "moir/Target/CPU/CPUTarget.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

namespace moir::frontend {
class WeightStore;
} // namespace moir::frontend

namespace moir {

/// Compiles an input-phase module (from the importer) for the CPU and writes
/// the artifact to `outputPath`: graph phase, lowering, code generation,
/// weight packing.
llvm::Error compileCPUArtifact(mlir::ModuleOp module, const frontend::WeightStore &store,
                               const cpu::TargetOptions &options,
                               llvm::StringRef outputPath);

} // namespace moir

#endif // MOIR_DRIVER_COMPILE_H
