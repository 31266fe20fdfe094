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
  /// Register-blocked kernels for the contractions (moir-cpu-contraction-
  /// kernels); off keeps plain loops, the reference they are tested against.
  bool contractionKernels = true;
  /// bf16 weights multiply with AVX512-BF16 dot products where the CPU has
  /// them, activations rounded to bf16 as bf16 inference does (0.5-1.6% of
  /// the largest logit on the fixtures; the MoE router stays f32). Off: f32
  /// FMAs, exact to the bf16-weight reference.
  bool bf16Dot = true;
};

/// How the contraction kernels (moir-cpu-contraction-kernels) are shaped
/// for a target: its vector registers and whether it has AVX512-BF16.
struct KernelOptions {
  int64_t vectorWidth = 16;
  bool bf16Dot = false;
  /// false: contractions keep plain loops (LLVM vectorizes their k
  /// reductions); the reference the kernels are checked against.
  bool enabled = true;
};

/// The kernel shape for the target CPU: 16 f32 lanes with AVX-512, 8 with
/// AVX, 4 otherwise (SSE, NEON); bf16 dot products with AVX512-BF16.
llvm::Expected<KernelOptions> kernelOptionsFor(const TargetOptions &options);

/// Linalg on tensors -> buffers with the entry ABI (identity layouts, caches
/// updated in place, logits an out-parameter, memref.copy as linalg.copy).
/// Shared by the CPU and GPU backends.
void buildEntryBufferizationPipeline(mlir::OpPassManager &pm);

/// Graph phase -> bufferized linalg -> loops -> LLVM dialect, with the
/// exported entry `moir_forward`.
void buildLoweringToLinalgPipeline(mlir::OpPassManager &pm);
void buildLoweringToLLVMPipeline(mlir::OpPassManager &pm,
                                 const KernelOptions &kernels = {});

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

