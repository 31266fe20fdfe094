//===- MLADialect.h - Multi-head Latent Attention dialect ----------------*- C++ -*-===//

#ifndef MOIR_DIALECT_MLA_IR_MLADIALECT_H
#define MOIR_DIALECT_MLA_IR_MLADIALECT_H

#include "LLM/IR/LLMDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Dialect.h"

#include "MLA/IR/MLADialect.h.inc"
#include "MLA/IR/MLAEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "MLA/IR/MLAAttrs.h.inc"

#endif // MOIR_DIALECT_MLA_IR_MLADIALECT_H
