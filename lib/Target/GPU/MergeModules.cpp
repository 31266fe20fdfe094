//===- MergeModules.cpp - every kernel in one gpu.module --------------------===//

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
#define GEN_PASS_DEF_GPUMERGEMODULESPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct GPUMergeModulesPass : moir::impl::GPUMergeModulesPassBase<GPUMergeModulesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto modules = llvm::to_vector(module.getOps<gpu::GPUModuleOp>());
    if (modules.size() < 2)
      return;
    OpBuilder b(modules.front());
    auto merged = gpu::GPUModuleOp::create(b, module.getLoc(), "moir_kernels");
    SymbolTable table(merged);
    // Kernel functions repeat their names across modules; the modules' own
    // names are unique, so each kernel takes its module's name.
    module.walk([&](gpu::LaunchFuncOp launch) {
      launch.setKernelAttr(SymbolRefAttr::get(
          merged.getNameAttr(), {FlatSymbolRefAttr::get(launch.getKernelModuleName())}));
    });
    for (gpu::GPUModuleOp from : modules) {
      for (Operation &op : llvm::make_early_inc_range(*from.getBody())) {
        auto symbol = dyn_cast<SymbolOpInterface>(op);
        if (auto kernel = dyn_cast<gpu::GPUFuncOp>(op))
          kernel.setName(from.getName());
        else if (symbol && table.lookup(symbol.getName()))
          continue; // the same constant, already moved
        op.moveBefore(merged.getBody(), merged.getBody()->end());
        if (symbol)
          table.insert(&op);
      }
    }
    for (gpu::GPUModuleOp from : modules)
      from.erase();
  }
};

} // namespace
