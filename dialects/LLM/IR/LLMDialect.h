//===- LLMDialect.h - common LLM dialect ------------------------*- C++ -*-===//

#ifndef MOIR_DIALECT_LLM_IR_LLMDIALECT_H
#define MOIR_DIALECT_LLM_IR_LLMDIALECT_H

#include "MoIR/IR/MoIRDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"

#include "mlir/IR/DialectImplementation.h"

namespace moir::llm {
/// `[1, 2, 3]` in attribute parameters.
mlir::FailureOr<llvm::SmallVector<int64_t>>
parseBracketedI64List(mlir::AsmParser &parser);
void printBracketedI64List(mlir::AsmPrinter &printer, llvm::ArrayRef<int64_t> values);
} // namespace moir::llm

#include "LLM/IR/LLMDialect.h.inc"
#include "LLM/IR/LLMEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "LLM/IR/LLMAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "LLM/IR/LLMTypes.h.inc"

#endif // MOIR_DIALECT_LLM_IR_LLMDIALECT_H
