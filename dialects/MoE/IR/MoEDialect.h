//===- MoEDialect.h - Mixture-of-Experts dialect ----------------*- C++ -*-===//

#ifndef MOIR_DIALECT_MOE_IR_MOEDIALECT_H
#define MOIR_DIALECT_MOE_IR_MOEDIALECT_H

#include "LLM/IR/LLMDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Dialect.h"

#include "MoE/IR/MoEDialect.h.inc"
#include "MoE/IR/MoEEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "MoE/IR/MoEAttrs.h.inc"

#endif // MOIR_DIALECT_MOE_IR_MOEDIALECT_H
