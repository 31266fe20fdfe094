//===- CPUTarget.h - MoIR's CPU backend -------------------------*- C++ -*-===//
//
// The CPU's own passes (lowering configuration, contraction kernels,
// parallel loops, inline math, FP8 arithmetic) and how its kernels are shaped
// for a CPU. What every target shares (entry ABI, shared object) is in
// moir/Target/Host; the phases' pipelines are in moir/Pipelines.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_CPU_CPUTARGET_H
#define MOIR_TARGET_CPU_CPUTARGET_H

#include "moir/Target/Host/Host.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "llvm/Support/Error.h"

namespace moir {

#define GEN_PASS_DECL
#include "moir/Target/CPU/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moir/Target/CPU/Passes.h.inc"

namespace cpu {

/// How the contraction kernels (moir-cpu-contraction-kernels) are shaped
/// for a target: its vector registers and whether it has AVX512-BF16.
struct KernelOptions {
  int64_t vectorWidth = 16;
  bool bf16Dot = false;
  /// Integer-coded packed weights multiply int8-quantized activations with
  /// dot products (AVX512-VNNI at 16 lanes, AVX-VNNI at 8, AArch64 dotprod
  /// at 4).
  bool int8Dot = false;
  /// With bf16Dot or int8Dot at 16 lanes, their prefill products on AMX
  /// tiles (AMX-BF16 and AMX-INT8).
  bool amx = false;
  /// The CPU has int8 dot products at 16 lanes and AMX-INT8 (Intel's
  /// Sapphire Rapids and later), whether or not `amx` uses the tiles: with
  /// AMD Zen 4, the CPUs whose decode measured faster with int8 activations
  /// for every integer code (--cpu-int8-decode=auto).
  bool amxInt8Cores = false;
  /// With int8Dot, which packed weights take int8 activations with fewer
  /// than 8 activation rows (decode) too: "none", "nibbles" (4-bit codes)
  /// or "all".
  std::string int8Decode = "none";
  /// Those decode activations as one int8 code per element (8) or with a
  /// second one holding its rounding error (16).
  int64_t int8DecodeBits = 8;
  /// Bytes of weights ahead that the packed weights' decode kernels
  /// prefetch (in whole tiles; --cpu-prefetch-distance).
  int64_t prefetchBytes = 4096;
  /// false: contractions keep plain loops (LLVM vectorizes their k
  /// reductions); the reference the kernels are checked against.
  bool enabled = true;
};

/// The kernel shape for the host's CPU: 16 f32 lanes with AVX-512, 8 with
/// AVX, 4 otherwise (SSE, NEON); bf16 dot products with AVX512-BF16 when
/// `bf16Dot` asks for them; int8 dot products with AVX512-VNNI (AVX-VNNI at
/// 8 lanes, dotprod on AArch64) when `int8Dot` asks for them; AMX tiles
/// for those prefill products when `amx` asks for them and the CPU has
/// AMX-BF16 and AMX-INT8 (with AVX-512).
llvm::Expected<KernelOptions> kernelOptionsFor(const host::HostOptions &host,
                                               bool contractionKernels, bool bf16Dot,
                                               bool int8Dot, bool amx);

/// Registers the CPU backend ("cpu") and its whole-layers-on-Halide form
/// ("halide", whose artifacts are CPU host code too) with the target
/// backend registry.
void registerCPUBackend();

} // namespace cpu
} // namespace moir

#endif // MOIR_TARGET_CPU_CPUTARGET_H
