//===- InitAll.h - register MoIR's dialects and passes ----------*- C++ -*-===//

#ifndef MOIR_INITALL_H
#define MOIR_INITALL_H

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace moir {

/// MoIR's dialects and the upstream ones its pipelines produce.
void registerAllDialects(mlir::DialectRegistry &registry);

/// MoIR's passes and pipelines, plus the upstream passes they use, so that
/// moir-opt can run each alone.
void registerAllPasses();

/// Registers the target backends this build has (cpu; nvidia and amd unless
/// configured off). Idempotent.
void registerAllTargets();

} // namespace moir

#endif // MOIR_INITALL_H
