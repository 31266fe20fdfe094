//===- HoistScratch.cpp - kernels' stack buffers in their entry block ------===//
//
// A fixed-size stack buffer that a kernel allocates inside a branch or loop
// is a dynamic stack allocation to the backends (AMDGPU cannot select one);
// at the top of the entry block it is part of the thread's fixed frame.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/GPU/GPUTarget.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace moir {
#define GEN_PASS_DEF_GPUHOISTSCRATCHPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct GPUHoistScratchPass : moir::impl::GPUHoistScratchPassBase<GPUHoistScratchPass> {
  void runOnOperation() override {
    gpu::GPUFuncOp kernel = getOperation();
    if (kernel.isExternal())
      return;
    Block &entry = kernel.getBody().front();
    SmallVector<memref::AllocaOp> moves;
    kernel.walk([&](memref::AllocaOp alloca) {
      // Sized by values of the kernel: stays where they are; in an alloca
      // scope: freed at its end, which moving would change.
      if (alloca->getBlock() != &entry && alloca->getNumOperands() == 0 &&
          !alloca->getParentOfType<memref::AllocaScopeOp>())
        moves.push_back(alloca);
    });
    for (memref::AllocaOp alloca : moves)
      alloca->moveBefore(&entry, entry.begin());
  }
};

} // namespace
