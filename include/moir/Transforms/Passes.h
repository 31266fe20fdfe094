//===- Passes.h - MoIR graph-level passes -----------------------*- C++ -*-===//

#ifndef MOIR_TRANSFORMS_PASSES_H
#define MOIR_TRANSFORMS_PASSES_H

#include "LLM/IR/LLMDialect.h"
#include "MLA/IR/MLADialect.h"
#include "MoE/IR/MoEDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace moir {

#define GEN_PASS_DECL
#include "moir/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moir/Transforms/Passes.h.inc"

} // namespace moir

#endif // MOIR_TRANSFORMS_PASSES_H
