//===- InitAll.cpp - register MoIR's dialects and passes -------------------===//

#include "moir/InitAll.h"

#include "LLM/IR/LLMDialect.h"
#include "MLA/IR/MLADialect.h"
#include "MoE/IR/MoEDialect.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Conversion/Passes.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/GPU/GPUTarget.h"
#include "moir/Target/NVIDIA/NVIDIATarget.h"
#include "moir/Target/AMD/AMDTarget.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Transforms/Passes.h"

void moir::registerAllDialects(mlir::DialectRegistry &registry) {
  registry.insert<MoIRDialect, llm::LLMDialect, moe::MoEDialect, mla::MLADialect>();
  // The lowering pipelines go through most of upstream MLIR down to LLVM.
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  mlir::registerAllToLLVMIRTranslations(registry);
}

void moir::registerAllPasses() {
  mlir::registerAllPasses();
  registerMoIRTransformsPasses();
  registerMoIRConversionPasses();
  registerMoIRCPUPasses();
  registerMoIRGPUPasses();
  moir::gpu::registerPipelines();
  registerAllTargets();
  registerPipelines();
}

void moir::registerAllTargets() {
  moir::nvidia::registerNVIDIATarget();
  moir::amd::registerAMDTarget();
}
