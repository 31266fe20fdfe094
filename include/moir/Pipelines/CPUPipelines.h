//===- CPUPipelines.h - the CPU's phases after linalg -----------*- C++ -*-===//

#ifndef MOIR_PIPELINES_CPUPIPELINES_H
#define MOIR_PIPELINES_CPUPIPELINES_H

#include "mlir/Pass/PassManager.h"

namespace moir {
namespace cpu {
struct KernelOptions;
} // namespace cpu

/// CPU: Linalg -> bufferized (the entry ABI), contraction kernels, parallel
/// loops on the thread pool, LLVM dialect with `moir_forward`.
void buildCPULoweringToLLVMPipeline(mlir::OpPassManager &pm, const cpu::KernelOptions &kernels);

/// moir-cpu-lowering (graph phase -> LLVM, AVX-512-shaped kernels), for
/// moir-opt.
void registerCPUPipelines();

} // namespace moir

#endif // MOIR_PIPELINES_CPUPIPELINES_H
