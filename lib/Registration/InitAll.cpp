//===- InitAll.cpp - register MoIR's dialects and passes -------------------===//

#include "moir/InitAll.h"

#include "LLM/IR/LLMDialect.h"
#include "MLA/IR/MLADialect.h"
#include "MoE/IR/MoEDialect.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Transforms/Passes.h"

void moir::registerAllDialects(mlir::DialectRegistry &registry) {
  registry.insert<llm::LLMDialect, moe::MoEDialect, mla::MLADialect,
                  mlir::func::FuncDialect, mlir::arith::ArithDialect,
                  mlir::tensor::TensorDialect, mlir::linalg::LinalgDialect>();
}

void moir::registerAllPasses() {
  mlir::registerTransformsPasses(); // canonicalize, cse, ...
  registerMoIRTransformsPasses();
  registerPipelines();
}
