//===- MoEOps.h - Mixture-of-Experts ops ------------------------*- C++ -*-===//

#ifndef MOIR_DIALECT_MOE_IR_MOEOPS_H
#define MOIR_DIALECT_MOE_IR_MOEOPS_H

#include "LLM/IR/LLMOps.h"
#include "MoE/IR/MoEDialect.h"

#define GET_OP_CLASSES
#include "MoE/IR/MoEOps.h.inc"

#endif // MOIR_DIALECT_MOE_IR_MOEOPS_H
