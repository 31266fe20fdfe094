//===- LLMOps.h - common LLM ops --------------------------------*- C++ -*-===//

#ifndef MOIR_DIALECT_LLM_IR_LLMOPS_H
#define MOIR_DIALECT_LLM_IR_LLMOPS_H

#include "LLM/IR/LLMDialect.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "LLM/IR/LLMInterfaces.h.inc"

#define GET_OP_CLASSES
#include "LLM/IR/LLMOps.h.inc"

namespace moir::llm {

/// Adds the pattern that lets a QuantizedWeightConsumerOpInterface op read
/// a quantized weight directly instead of through `llm.dequantize`. Each
/// consumer op adds it to its canonicalization patterns.
void populateFoldDequantizeIntoConsumerPatterns(mlir::RewritePatternSet &patterns);

/// Shared verification helpers for the MoIR dialects; each emits an op error
/// naming `what` and returns failure on mismatch.
mlir::LogicalResult verifyRank(mlir::Operation *op, llvm::StringRef what,
                               mlir::Type type, int64_t rank);
/// Dimensions are compatible when equal or either is dynamic.
mlir::LogicalResult verifyDim(mlir::Operation *op, llvm::StringRef what,
                              int64_t actual, int64_t expected);
/// a * b, dynamic if either is.
int64_t multiplyDims(int64_t a, int64_t b);
/// Static shape of a weight operand (tensor or qtensor).
llvm::ArrayRef<int64_t> getWeightShape(mlir::Type type);

/// W8A8: `x` quantized per row as `quant` says (`llm.dynamic_quant`), or `x`
/// itself without a quantization.
mlir::Value quantizeRows(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                         std::optional<DynamicQuant> quant);
/// A linear reading inputs quantized as `quant` says: int8 codes times a
/// scale per token are products the kernels must not round again (precise).
LinearOp createLinearOnQuantized(mlir::OpBuilder &b, mlir::Location loc, mlir::Value input,
                                 mlir::Value weight, std::optional<DynamicQuant> quant,
                                 mlir::Value bias = nullptr);

} // namespace moir::llm

#endif // MOIR_DIALECT_LLM_IR_LLMOPS_H
