//===- InitAll.cpp - register MoIR's dialects and passes -------------------===//

#include "moir/InitAll.h"

#include "LLM/IR/LLMDialect.h"
#include "MLA/IR/MLADialect.h"
#include "MoE/IR/MoEDialect.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Conversion/Passes.h"
#include "moir/Pipelines/CPUPipelines.h"
#include "moir/Pipelines/GPUPipelines.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/GPU/GPUTarget.h"
#include "moir/Target/Halide/HalideTarget.h"
#include "moir/Target/Host/Host.h"
#include "moir/Transforms/Passes.h"
#ifdef MOIR_ENABLE_NVIDIA
#include "moir/Target/NVIDIA/NVIDIATarget.h"
#endif
#ifdef MOIR_ENABLE_AMD
#include "moir/Target/AMD/AMDTarget.h"
#endif

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
  host::registerCollectiveBufferization(registry);
  halide::registerHalideCallBufferization(registry);
}

void moir::registerAllPasses() {
  mlir::registerAllPasses();
  registerMoIRTransformsPasses();
  registerMoIRConversionPasses();
  registerMoIRHostPasses();
  registerMoIRCPUPasses();
  registerMoIRHalidePasses();
  registerMoIRGPUPasses();
  registerAllTargets();
  registerPipelines();
  registerCPUPipelines();
  registerGPUPipelines();
}

void moir::registerAllTargets() {
  static bool registered = false;
  if (registered)
    return;
  registered = true;
  moir::cpu::registerCPUBackend();
#ifdef MOIR_ENABLE_NVIDIA
  moir::nvidia::registerNVIDIATarget();
#endif
#ifdef MOIR_ENABLE_AMD
  moir::amd::registerAMDTarget();
#endif
}
