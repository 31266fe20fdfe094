//===- CPUTarget.h - MoIR's CPU backend -------------------------*- C++ -*-===//

#ifndef MOIR_TARGET_CPU_CPUTARGET_H
#define MOIR_TARGET_CPU_CPUTARGET_H

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Error.h"

#include <string>

namespace moir {

#define GEN_PASS_DECL
#include "moir/Target/CPU/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moir/Target/CPU/Passes.h.inc"

namespace cpu {

struct TargetOptions {
  /// Target triple; empty means the host's.
  std::string triple;
  /// CPU name for llc's -mcpu: "native" (the host's), "znver4", "x86-64-v3",
  /// "neoverse-v1", ...
  std::string cpu = "native";
  unsigned optLevel = 3;
};

/// Linalg on tensors -> buffers with the entry ABI (identity layouts, caches
/// updated in place, logits an out-parameter, memref.copy as linalg.copy).
/// Shared by the CPU and GPU backends.
void buildEntryBufferizationPipeline(mlir::OpPassManager &pm);

/// Graph phase -> bufferized linalg -> loops -> LLVM dialect, with the
/// exported entry `moir_forward`.
void buildLoweringToLinalgPipeline(mlir::OpPassManager &pm);
void buildLoweringToLLVMPipeline(mlir::OpPassManager &pm);

/// The triple and CPU the options resolve to (the host's for empty/"native").
std::string resolveTriple(const TargetOptions &options);
std::string resolveCPU(const TargetOptions &options);

/// Translates an LLVM-dialect module to LLVM IR, optimizes it, emits an
/// object for the target and links it into a shared object with ld.lld.
/// Returns the shared object's bytes.
llvm::Expected<std::string> emitSharedObject(mlir::ModuleOp module,
                                             const TargetOptions &options);

} // namespace cpu
} // namespace moir

#endif // MOIR_TARGET_CPU_CPUTARGET_H

