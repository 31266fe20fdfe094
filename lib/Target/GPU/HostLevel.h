//===- HostLevel.h - what stays host code in the GPU lowering --*- C++ -*-===//
//
// One definition shared by moir-gpu-offload (which splits host control from
// device work) and the passes before it that must agree with that split.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_LIB_TARGET_GPU_HOSTLEVEL_H
#define MOIR_LIB_TARGET_GPU_HOSTLEVEL_H

#include "mlir/IR/Operation.h"
#include "mlir/Support/LLVM.h"

namespace moir::gpu {

/// Whether a loop or branch must stay host control: it holds a dynamically
/// sized allocation or a call. Otherwise moir-gpu-offload runs it as one
/// serial device thread.
bool holdsHostWork(mlir::Operation *op);

/// Whether `op` stays host code: no op enclosing it below `until` (the
/// enclosing function when null) becomes device work.
bool staysOnHost(mlir::Operation *op, mlir::Operation *until = nullptr);

/// Every scf.parallel (without reductions) inside `root` becomes a nest of
/// scf.for: what runs as one device thread (moir-gpu-offload) or within one
/// (moir-gpu-map-loops) keeps its loops sequential.
llvm::LogicalResult sequentializeNested(mlir::Operation *root);

} // namespace moir::gpu

#endif
