//===- TestContext.h - an MLIRContext with MoIR's dialects -----*- C++ -*-===//

#ifndef MOIR_TEST_UNIT_TESTCONTEXT_H
#define MOIR_TEST_UNIT_TESTCONTEXT_H

#include "moir/InitAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include <memory>

namespace moir::test {

/// A context with every dialect MoIR registers, all loaded.
inline std::unique_ptr<mlir::MLIRContext> makeContext() {
  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  auto context = std::make_unique<mlir::MLIRContext>(registry);
  context->loadAllAvailableDialects();
  return context;
}

} // namespace moir::test

#endif // MOIR_TEST_UNIT_TESTCONTEXT_H
