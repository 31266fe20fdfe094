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

/// Adds the GPU backends (nvidia, ...) to the GPU target registry.
void registerAllTargets();

} // namespace moir

#endif // MOIR_INITALL_H
