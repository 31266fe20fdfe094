//===- MLAOps.h - Multi-head Latent Attention ops ------------------------*- C++ -*-===//

#ifndef MOIR_DIALECT_MLA_IR_MLAOPS_H
#define MOIR_DIALECT_MLA_IR_MLAOPS_H

#include "LLM/IR/LLMOps.h"
#include "MLA/IR/MLADialect.h"

#define GET_OP_CLASSES
#include "MLA/IR/MLAOps.h.inc"

#endif // MOIR_DIALECT_MLA_IR_MLAOPS_H
