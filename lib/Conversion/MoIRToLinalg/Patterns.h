//===- Patterns.h - MoIR op lowering patterns -------------------*- C++ -*-===//

#ifndef MOIR_LIB_CONVERSION_MOIRTOLINALG_PATTERNS_H
#define MOIR_LIB_CONVERSION_MOIRTOLINALG_PATTERNS_H

#include "mlir/IR/PatternMatch.h"

namespace moir::lowering {
void populateLLMToLinalgPatterns(mlir::RewritePatternSet &patterns);
void populateMoEToLinalgPatterns(mlir::RewritePatternSet &patterns);
void populateMLAToLinalgPatterns(mlir::RewritePatternSet &patterns);
} // namespace moir::lowering

#endif
