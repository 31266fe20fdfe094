//===- LLMDialect.h - common LLM dialect ------------------------*- C++ -*-===//

#ifndef MOIR_DIALECT_LLM_IR_LLMDIALECT_H
#define MOIR_DIALECT_LLM_IR_LLMDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"

#include "LLM/IR/LLMDialect.h.inc"
#include "LLM/IR/LLMEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "LLM/IR/LLMAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "LLM/IR/LLMTypes.h.inc"

#endif // MOIR_DIALECT_LLM_IR_LLMDIALECT_H
