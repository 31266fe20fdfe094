//===- HostMemory.cpp - host-level buffers in device memory -----------------===//

#include "moir/Target/GPU/GPUTarget.h"
#include "MoIR/IR/MoIRDialect.h"

#include "HostLevel.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/Transforms/ParallelLoopMapper.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/Transforms.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/RegionUtils.h"

namespace moir {
#define GEN_PASS_DEF_GPUHOSTMEMORYPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct GPUHostMemoryPass : moir::impl::GPUHostMemoryPassBase<GPUHostMemoryPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Constants read by kernels travel inside the device module.
    module.walk([&](gpu::LaunchOp launch) {
      llvm::SetVector<Value> captured;
      getUsedValuesDefinedAbove(launch.getBody(), captured);
      for (Value value : captured) {
        auto global = value.getDefiningOp<memref::GetGlobalOp>();
        if (!global)
          continue;
        OpBuilder b(&launch.getBody().front(), launch.getBody().front().begin());
        Operation *copy = b.clone(*global);
        replaceAllUsesInRegionWith(value, copy->getResult(0), launch.getBody());
      }
    });
    SmallVector<Operation *> hostOps;
    module.walk([&](Operation *op) {
      if (isa<memref::AllocOp, memref::DeallocOp, memref::AllocaOp>(op) &&
          !op->getParentOfType<gpu::LaunchOp>() && !op->hasAttr(moir::attrs::hostCopyName()))
        hostOps.push_back(op);
    });
    for (Operation *op : hostOps) {
      OpBuilder b(op);
      if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
        auto device = gpu::AllocOp::create(b, op->getLoc(), alloc.getType(), /*asyncToken=*/Type(),
                                           ValueRange{}, alloc.getDynamicSizes(), ValueRange{});
        alloc.replaceAllUsesWith(device.getMemref());
        alloc.erase();
      } else if (auto dealloc = dyn_cast<memref::DeallocOp>(op)) {
        gpu::DeallocOp::create(b, op->getLoc(), /*asyncToken=*/Type(), ValueRange{},
                               dealloc.getMemref());
        dealloc.erase();
      } else {
        op->emitError("stack buffer at host level: the device cannot reach it");
        return signalPassFailure();
      }
    }
  }
};

} // namespace
