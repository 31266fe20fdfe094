//===- Contractions.h - contraction helpers of the GPU lowering -*- C++ -*-===//
//
// Shared by moir-gpu-warp-reductions and moir-gpu-tensor-cores, which both
// replace a contraction and the fill of its output that precedes it.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_LIB_TARGET_GPU_CONTRACTIONS_H
#define MOIR_LIB_TARGET_GPU_CONTRACTIONS_H

#include "mlir/Dialect/Linalg/IR/Linalg.h"

namespace moir::gpu {

/// The `linalg.fill` right before `op` that the replacement may drop because
/// it writes every element of the filled buffer itself (its output map is a
/// permutation of its parallel dimensions, the buffer is not also an input):
/// the replacement starts from the fill's constant instead of reading it
/// back. Null when there is none.
mlir::linalg::FillOp foldableFill(mlir::linalg::GenericOp op);

/// The indices an operand's indexing `map` gives at loop indices `ivs`: one
/// affine.apply per result of the map.
llvm::SmallVector<mlir::Value> applyIndexing(mlir::OpBuilder &b, mlir::Location loc,
                                             mlir::AffineMap map, mlir::ValueRange ivs);

} // namespace moir::gpu

#endif
