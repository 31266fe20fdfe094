//===- moir-opt.cpp - MoIR's optimizer driver ------------------------------===//
//
// Runs any MoIR pass or pipeline alone on a .mlir file; what lit tests call.
//
//===----------------------------------------------------------------------===//

#include "moir/InitAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  moir::registerAllDialects(registry);
  moir::registerAllPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "MoIR optimizer driver\n", registry));
}
