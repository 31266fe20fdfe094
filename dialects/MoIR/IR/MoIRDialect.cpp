//===- MoIRDialect.cpp - MoIR's contract attributes -----------------------===//

#include "MoIR/IR/MoIRDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace moir;

#include "MoIR/IR/MoIRDialect.cpp.inc"
#include "MoIR/IR/MoIREnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "MoIR/IR/MoIRAttrs.cpp.inc"

#define GET_OP_CLASSES
#include "MoIR/IR/MoIROps.cpp.inc"

void MoIRDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "MoIR/IR/MoIROps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "MoIR/IR/MoIRAttrs.cpp.inc"
      >();
}
