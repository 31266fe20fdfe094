//===- Compile.h - whole compiles, as moirc runs them -----------*- C++ -*-===//
//
// A compile runs the phases of its target backend in order, one pass
// pipeline per phase (moir/Pipelines), reading one CompileOptions. The same
// loop serves --compile-to (stop after a phase, print its IR) and a full
// compile (serialize, pack the weights, write the artifact), so the IR a
// phase prints is the IR the real compile runs.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_DRIVER_COMPILE_H
#define MOIR_DRIVER_COMPILE_H

#include "moir/Pipelines/Options.h"
#include "moir/Target/Artifact.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

namespace moir::frontend {
class WeightStore;
} // namespace moir::frontend

namespace moir {

/// Runs the phases of `options.target` on an input-phase module (from the
/// importer) up to and including `last`; the module is left at that phase.
/// `options` is validated and completed by the target first.
llvm::Error compileToPhase(mlir::ModuleOp module, CompileOptions options, CompilePhase last);

/// Compiles an input-phase module for `options.target` and writes the
/// artifact to `outputPath`: every phase, the target's serialization, the
/// manifest (from @forward's #moir.arg attributes) and the packed weights.
llvm::Error compileArtifact(mlir::ModuleOp module, const frontend::WeightStore &store,
                            CompileOptions options, llvm::StringRef outputPath);

/// moirc --report: runs the graph phase and the target's lowering
/// configuration on a copy of `module`, then prints, per layer and in total,
/// the contractions' FLOPs and the weight and cache bytes they read per
/// decode token at `context` and per token of a `prompt`-token prefill, with
/// the graph phase's fusion choices and without them, and the fusions
/// applied.
llvm::Error reportWork(mlir::ModuleOp module, CompileOptions options, int64_t context,
                       int64_t prompt, llvm::raw_ostream &os);

/// The report itself, on a module in the graph phase carrying a
/// #moir.lowering_config.
llvm::Error printReport(mlir::ModuleOp module, int64_t context, int64_t prompt,
                        llvm::raw_ostream &os);

/// The cost components of a module in the graph phase carrying a
/// #moir.lowering_config, prefill counted for a `prompt`-token prompt.
llvm::Expected<std::vector<CostComponent>> costModel(mlir::ModuleOp module, int64_t prompt);

} // namespace moir

#endif // MOIR_DRIVER_COMPILE_H
