//===- Offload.cpp - host control vs device loops, blocks and threads ------===//

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
#include "mlir/Interfaces/SideEffectInterfaces.h"
namespace moir {
#define GEN_PASS_DEF_GPUOFFLOADPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

bool moir::gpu::holdsHostWork(Operation *op) {
  WalkResult result = op->walk([](Operation *inner) {
    if (auto alloc = dyn_cast<memref::AllocOp>(inner))
      if (!alloc.getType().hasStaticShape())
        return WalkResult::interrupt();
    if (isa<func::CallOp>(inner))
      return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return result.wasInterrupted();
}

bool moir::gpu::staysOnHost(Operation *op, Operation *until) {
  for (Operation *p = op->getParentOp(); p && p != until && !isa<func::FuncOp>(p);
       p = p->getParentOp())
    if (isa<scf::ParallelOp>(p) || !holdsHostWork(p))
      return false;
  return true;
}

using moir::gpu::holdsHostWork;
using moir::gpu::staysOnHost;
namespace {

const llvm::StringLiteral kSerial = moir::attrs::serialName();

/// Ops that may stay on the host: no effect on buffer contents.
bool isHostOp(Operation *op) {
  return isa<memref::AllocOp, memref::DeallocOp, memref::GetGlobalOp, func::CallOp,
             func::ReturnOp, scf::YieldOp, memref::ExtractAlignedPointerAsIndexOp,
             memref::ExtractStridedMetadataOp>(op) ||
         isMemoryEffectFree(op);
}

/// scf.parallel (without reductions) -> a nest of scf.for.
LogicalResult sequentialize(scf::ParallelOp loop) {
  if (loop.getNumReductions() != 0)
    return loop.emitError("parallel loops with reductions are not offloaded");
  // Its lanes exchange values through shuffles: run one after the other they
  // would read lanes that never ran.
  if (loop->hasAttr(moir::attrs::warpReduceName()))
    return loop.emitError("a warp reduction cannot run inside a serial device loop");
  IRRewriter rewriter(loop);
  Location loc = loop.getLoc();
  SmallVector<Value> ivs;
  Operation *insertBefore = loop;
  for (auto [lb, ub, step] :
       llvm::zip(loop.getLowerBound(), loop.getUpperBound(), loop.getStep())) {
    rewriter.setInsertionPoint(insertBefore);
    auto forOp = scf::ForOp::create(rewriter, loc, lb, ub, step);
    ivs.push_back(forOp.getInductionVar());
    insertBefore = forOp.getBody()->getTerminator();
  }
  Block *body = loop.getBody();
  rewriter.eraseOp(body->getTerminator());
  rewriter.inlineBlockBefore(body, insertBefore, ivs);
  rewriter.eraseOp(loop);
  return success();
}

} // namespace

LogicalResult moir::gpu::sequentializeNested(Operation *root) {
  SmallVector<scf::ParallelOp> nested;
  root->walk([&](scf::ParallelOp p) {
    if (p != root)
      nested.push_back(p);
  });
  // Post-order: innermost first.
  for (scf::ParallelOp p : nested)
    if (failed(sequentialize(p)))
      return failure();
  return success();
}

namespace {

/// Fixed-size scratch buffers allocated inside the device loop `loop` become
/// one stack buffer each at the start of its body: private to each thread
/// (each iteration of a serial loop, or each work item of a parallel one,
/// that used a fresh one writes before reading).
LogicalResult stackScratch(scf::ParallelOp loop) {
  SmallVector<memref::AllocOp> allocs;
  loop->walk([&](memref::AllocOp alloc) { allocs.push_back(alloc); });
  OpBuilder b(loop);
  for (memref::AllocOp alloc : allocs) {
    if (!alloc.getType().hasStaticShape())
      return alloc.emitError("dynamically sized buffer inside a device loop");
    b.setInsertionPointToStart(loop.getBody());
    auto stack = memref::AllocaOp::create(b, alloc.getLoc(), alloc.getType(),
                                          alloc.getAlignmentAttr());
    for (Operation *user : llvm::make_early_inc_range(alloc->getUsers()))
      if (isa<memref::DeallocOp>(user))
        user->erase();
    alloc.replaceAllUsesWith(stack.getResult());
    alloc.erase();
  }
  return success();
}

/// Wraps `op` in a one-iteration scf.parallel: a single-thread kernel.
LogicalResult wrapSerial(Operation *op) {
  for (Value result : op->getResults())
    if (!result.use_empty())
      return op->emitError("cannot run this op on the device: the host uses its result");
  OpBuilder b(op);
  Location loc = op->getLoc();
  Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
  Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
  auto wrapper = scf::ParallelOp::create(b, loc, ValueRange{c0}, ValueRange{c1}, ValueRange{c1});
  wrapper->setAttr(kSerial, b.getUnitAttr());
  op->moveBefore(wrapper.getBody()->getTerminator());
  if (failed(moir::gpu::sequentializeNested(wrapper)))
    return failure();
  return stackScratch(wrapper);
}

func::FuncOp readFunction(ModuleOp module, unsigned bits) {
  std::string name = "moir_gpu_read_b" + std::to_string(bits);
  if (auto f = module.lookupSymbol<func::FuncOp>(name))
    return f;
  OpBuilder b(module.getBodyRegion());
  b.setInsertionPointToStart(module.getBody());
  auto type = b.getFunctionType({b.getIndexType()}, {b.getIntegerType(bits)});
  auto f = func::FuncOp::create(b, module.getLoc(), name, type);
  f.setPrivate();
  return f;
}

/// A host read of one element of a device buffer: address arithmetic on the
/// host, the read itself by the runtime.
LogicalResult replaceLoad(memref::LoadOp load, ModuleOp module) {
  Type type = load.getType();
  unsigned bits = type.isIndex() ? 64 : type.getIntOrFloatBitWidth();
  if (bits != 32 && bits != 64)
    return load.emitError("host read of a ") << type << " element is not supported";
  OpBuilder b(load);
  Location loc = load.getLoc();
  Value memref = load.getMemRef();
  auto metadata = memref::ExtractStridedMetadataOp::create(b, loc, memref);
  Value address = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, memref);
  Value linear = metadata.getOffset();
  for (auto [index, stride] : llvm::zip(load.getIndices(), metadata.getStrides()))
    linear = arith::AddIOp::create(b, loc, linear, arith::MulIOp::create(b, loc, index, stride));
  Value bytes = arith::MulIOp::create(b, loc, linear,
                                      arith::ConstantIndexOp::create(b, loc, bits / 8));
  address = arith::AddIOp::create(b, loc, address, bytes);
  func::FuncOp read = readFunction(module, bits);
  Value raw = func::CallOp::create(b, loc, read, ValueRange{address}).getResult(0);
  Value value = raw;
  if (type.isIndex())
    value = arith::IndexCastOp::create(b, loc, type, raw);
  else if (isa<FloatType>(type))
    value = arith::BitcastOp::create(b, loc, type, raw);
  load.replaceAllUsesWith(value);
  load.erase();
  return success();
}

const llvm::StringLiteral kHostCopy = moir::attrs::hostCopyName();

/// Buffers in host memory: constants (memref.get_global) and the host copies
/// made below. The host reads them directly.
bool inHostMemory(Value memref) {
  Operation *def = memref.getDefiningOp();
  return def && (isa<memref::GetGlobalOp>(def) || def->hasAttr(kHostCopy));
}

/// A host loop that only reads a small buffer defined outside it (the expert
/// loop reading each expert's row offsets) copies the whole buffer to the
/// host once before the loop: one synchronization instead of one per
/// kernel launch in between.
void prefetchLoopInvariantReads(scf::ForOp loop, ModuleOp module) {
  llvm::SetVector<Value> candidates;
  loop.getBody()->walk([&](memref::LoadOp load) {
    if (staysOnHost(load, loop))
      candidates.insert(load.getMemRef());
  });
  for (Value memref : candidates) {
    auto type = dyn_cast<MemRefType>(memref.getType());
    if (!type || inHostMemory(memref) || !type.hasStaticShape() || !type.getLayout().isIdentity() ||
        type.getNumElements() > 4096 || loop->isAncestor(memref.getParentRegion()->getParentOp()))
      continue;
    unsigned bits = type.getElementType().isIndex() ? 64 : type.getElementTypeBitWidth();
    if (bits % 8)
      continue;
    // Nothing in the loop may write it: its only uses there are host loads.
    bool readOnly = llvm::all_of(memref.getUses(), [&](OpOperand &use) {
      Operation *user = use.getOwner();
      if (!loop->isAncestor(user))
        return true;
      return isa<memref::LoadOp>(user) && staysOnHost(user, loop);
    });
    if (!readOnly)
      continue;
    // The host buffer lives in the function's frame (not re-allocated per
    // trip of an enclosing loop).
    auto func = loop->getParentOfType<func::FuncOp>();
    OpBuilder entry(&func.getBody().front(), func.getBody().front().begin());
    Location loc = loop.getLoc();
    auto copy = memref::AllocaOp::create(entry, loc, type);
    copy->setAttr(kHostCopy, entry.getUnitAttr());
    OpBuilder b(loop);
    Value host = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, copy);
    Value device = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, memref);
    Value bytes = arith::ConstantIndexOp::create(b, loc, type.getNumElements() * (bits / 8));
    func::FuncOp read = module.lookupSymbol<func::FuncOp>("moir_gpu_read_block");
    if (!read) {
      OpBuilder top(module.getBodyRegion());
      Type index = top.getIndexType();
      read = func::FuncOp::create(top, module.getLoc(), "moir_gpu_read_block",
                                  top.getFunctionType({index, index, index}, {}));
      read.setPrivate();
    }
    func::CallOp::create(b, loc, read, ValueRange{host, device, bytes});
    memref.replaceUsesWithIf(copy, [&](OpOperand &use) { return loop->isAncestor(use.getOwner()); });
  }
}

LogicalResult partition(Block &block, ModuleOp module) {
  for (Operation &op : llvm::make_early_inc_range(block)) {
    // Kernels built before this pass (moir-gpu-tensor-cores) are device work
    // already.
    if (isa<mlir::gpu::LaunchOp>(op))
      continue;
    if (auto loop = dyn_cast<scf::ParallelOp>(op)) {
      if (failed(moir::gpu::sequentializeNested(loop)) || failed(stackScratch(loop)))
        return failure();
      continue;
    }
    if (isMemoryEffectFree(&op))
      continue;
    if (auto load = dyn_cast<memref::LoadOp>(op)) {
      if (inHostMemory(load.getMemRef()))
        continue;
      if (failed(replaceLoad(load, module)))
        return failure();
      continue;
    }
    if (op.getNumRegions() > 0 && !isa<func::FuncOp>(op)) {
      if (holdsHostWork(&op)) {
        if (auto loop = dyn_cast<scf::ForOp>(op))
          prefetchLoopInvariantReads(loop, module);
        for (Region &region : op.getRegions())
          for (Block &inner : region)
            if (failed(partition(inner, module)))
              return failure();
        continue;
      }
      if (failed(wrapSerial(&op)))
        return failure();
      continue;
    }
    if (isHostOp(&op))
      continue;
    if (failed(wrapSerial(&op)))
      return failure();
  }
  return success();
}

struct GPUOffloadPass : moir::impl::GPUOffloadPassBase<GPUOffloadPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (auto func : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (func.isExternal())
        continue;
      if (failed(partition(func.getBody().front(), module)))
        return signalPassFailure();
    }
  }
};

} // namespace
