//===- Host.h - the host layer every target shares --------------*- C++ -*-===//
//
// What every MoIR artifact needs on the host, whatever runs its kernels: the
// entry bufferized to the runtime's calling convention (identity layouts,
// caches updated in place, logits an out-parameter), the exported entry
// `moir_forward`, and a shared object emitted and linked for a host triple.
// The CPU backend and the GPU backends (whose host code launches kernels)
// both build on it.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_HOST_HOST_H
#define MOIR_TARGET_HOST_HOST_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>

namespace moir {

#define GEN_PASS_DECL
#include "moir/Target/Host/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moir/Target/Host/Passes.h.inc"

namespace host {

/// The machine a shared object is generated for.
struct HostOptions {
  /// Target triple; empty means this machine's.
  std::string triple;
  /// CPU name for the code generator: "native" (this machine's), "znver4",
  /// "x86-64-v3", "neoverse-v1", ...
  std::string cpu = "native";
  unsigned optLevel = 3;
};

/// The triple and CPU the options resolve to (this machine's for
/// empty/"native").
std::string resolveTriple(const HostOptions &options);
std::string resolveCPU(const HostOptions &options);

/// The code generator's description of the options' CPU (its features).
llvm::Expected<std::unique_ptr<llvm::MCSubtargetInfo>> subtargetInfo(const HostOptions &options);

/// Linalg on tensors -> buffers with the entry ABI (identity layouts, caches
/// updated in place, logits an out-parameter, memref.copy as linalg.copy).
void buildEntryBufferizationPipeline(mlir::OpPassManager &pm);

/// How the collectives (llm.all_reduce) bufferize: in place, as calls into
/// the runtime's communication layer.
void registerCollectiveBufferization(mlir::DialectRegistry &registry);

/// The external function `name` of `type`, declared (private, no body) once
/// in the module holding `op`: what bufferized ops call into the runtime or
/// into linked objects.
mlir::func::FuncOp declareFunction(mlir::Operation *op, llvm::StringRef name,
                                   mlir::FunctionType type);

/// A new buffer with `buffer`'s shape and element type and an identity
/// layout, holding a copy of it: for C functions that take dense data.
mlir::Value copyToIdentityLayout(mlir::RewriterBase &rewriter, mlir::Location loc,
                                 mlir::Value buffer);

/// Translates an LLVM-dialect module (with `moir_forward`) to LLVM IR,
/// optimizes it, emits an object for the host and links it into a shared
/// object with ld.lld. Returns the shared object's bytes.
llvm::Expected<std::string> emitSharedObject(mlir::ModuleOp module, const HostOptions &options);

} // namespace host
} // namespace moir

#endif // MOIR_TARGET_HOST_HOST_H
