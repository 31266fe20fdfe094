//===- Passes.h - MoIR's lowering passes ------------------------*- C++ -*-===//

#ifndef MOIR_CONVERSION_PASSES_H
#define MOIR_CONVERSION_PASSES_H

#include "LLM/IR/LLMDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"

namespace moir {

#define GEN_PASS_DECL
#include "moir/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moir/Conversion/Passes.h.inc"

/// The RoPE inverse frequencies of `rope` (dim/2 values) and the factor its
/// cos/sin are scaled by (YaRN's attention factor; 1 otherwise), as Hugging
/// Face's rope utilities compute them.
struct RopeTables {
  llvm::SmallVector<float> invFreq;
  double attentionFactor = 1.0;
};
RopeTables computeRopeTables(llm::RopeAttr rope);

} // namespace moir

#endif // MOIR_CONVERSION_PASSES_H
