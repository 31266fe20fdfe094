//===- MapLoops.cpp - host-level parallel loops onto blocks and threads -----===//

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
#define GEN_PASS_DEF_GPUMAPLOOPSPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// Host-level parallel loops: not nested in another one, not in a launch.
SmallVector<scf::ParallelOp> hostLoops(ModuleOp module) {
  SmallVector<scf::ParallelOp> loops;
  module.walk([&](scf::ParallelOp loop) {
    if (!loop->getParentOfType<scf::ParallelOp>() && !loop->getParentOfType<gpu::LaunchOp>())
      loops.push_back(loop);
  });
  return loops;
}

struct GPUMapLoopsPass : moir::impl::GPUMapLoopsPassBase<GPUMapLoopsPass> {
  using GPUMapLoopsPassBase::GPUMapLoopsPassBase;

  gpu::ParallelLoopDimMappingAttr dim(gpu::Processor processor) {
    Builder b(&getContext());
    return gpu::ParallelLoopDimMappingAttr::get(&getContext(), processor,
                                                b.getDimIdentityMap(), b.getDimIdentityMap());
  }

  /// (outputs..., lane): a warp per output, `rowsPerBlock` warps per block
  /// along the innermost output dimension.
  LogicalResult mapWarpLoop(scf::ParallelOp loop) {
    constexpr int64_t rowsPerBlock = 4;
    unsigned rank = loop.getNumLoops();
    SmallVector<int64_t> tiles(rank, 1);
    tiles.back() = warpSize;
    if (rank >= 2)
      tiles[rank - 2] = rowsPerBlock;
    auto [outer, inner] = scf::tileParallelLoop(loop, tiles, /*noMinMaxBounds=*/true);
    SmallVector<gpu::ParallelLoopDimMappingAttr> outerMap(rank, dim(gpu::Processor::Sequential)),
        innerMap(rank, dim(gpu::Processor::Sequential));
    const gpu::Processor blocks[] = {gpu::Processor::BlockX, gpu::Processor::BlockY,
                                     gpu::Processor::BlockZ};
    for (unsigned i = 0; i + 1 < rank; ++i) {
      unsigned fromInnermost = rank - 2 - i;
      if (fromInnermost < 3)
        outerMap[i] = dim(blocks[fromInnermost]);
    }
    innerMap[rank - 1] = dim(gpu::Processor::ThreadX);
    if (rank >= 2)
      innerMap[rank - 2] = dim(gpu::Processor::ThreadY);
    return success(succeeded(gpu::setMappingAttr(outer, outerMap)) &&
                   succeeded(gpu::setMappingAttr(inner, innerMap)));
  }

  void runOnOperation() override {
    for (scf::ParallelOp loop : hostLoops(getOperation())) {
      if (failed(moir::gpu::sequentializeNested(loop)))
        return signalPassFailure();
      unsigned rank = loop.getNumLoops();
      if (loop->hasAttr(moir::attrs::serialName())) {
        SmallVector<gpu::ParallelLoopDimMappingAttr> mapping(rank, dim(gpu::Processor::Sequential));
        mapping[0] = dim(gpu::Processor::ThreadX);
        if (failed(gpu::setMappingAttr(loop, mapping)))
          return signalPassFailure();
        continue;
      }
      if (loop->hasAttr(moir::attrs::warpReduceName())) {
        if (failed(mapWarpLoop(loop)))
          return signalPassFailure();
        continue;
      }
      SmallVector<int64_t> tiles(rank, 1);
      int64_t tile = blockSize;
      std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound().back());
      std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound().back());
      std::optional<int64_t> step = getConstantIntValue(loop.getStep().back());
      if (lb && ub && step && *step > 0) {
        int64_t trips = (*ub - *lb + *step - 1) / *step;
        tile = std::min<int64_t>(blockSize, std::max<int64_t>(warpSize, (trips + warpSize - 1) /
                                                                             warpSize * warpSize));
      }
      tiles.back() = tile;
      auto [outer, inner] = scf::tileParallelLoop(loop, tiles, /*noMinMaxBounds=*/true);
      SmallVector<gpu::ParallelLoopDimMappingAttr> outerMap, innerMap;
      const gpu::Processor blocks[] = {gpu::Processor::BlockX, gpu::Processor::BlockY,
                                       gpu::Processor::BlockZ};
      for (unsigned i = 0; i < rank; ++i) {
        unsigned fromInnermost = rank - 1 - i;
        outerMap.push_back(dim(fromInnermost < 3 ? blocks[fromInnermost]
                                                 : gpu::Processor::Sequential));
        innerMap.push_back(dim(fromInnermost == 0 ? gpu::Processor::ThreadX
                                                  : gpu::Processor::Sequential));
      }
      if (failed(gpu::setMappingAttr(outer, outerMap)) ||
          failed(gpu::setMappingAttr(inner, innerMap)))
        return signalPassFailure();
    }
  }
};

} // namespace
