//===- EntryABI.cpp - the CPU artifact's calling convention ----------------===//

#include "moir/Target/CPU/CPUTarget.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

namespace moir {
#define GEN_PASS_DEF_CPUPREPAREABIPASS
#define GEN_PASS_DEF_CPUEXPORTENTRYPASS
#define GEN_PASS_DEF_CPUPARALLELIZEPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct CPUPrepareABIPass : moir::impl::CPUPrepareABIPassBase<CPUPrepareABIPass> {
  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!func) {
      getOperation().emitError("no @forward function");
      return signalPassFailure();
    }
    if (func.getNumResults() != 0) {
      func.emitError("@forward must return its results through arguments by now "
                     "(a result did not bufferize in place)");
      return signalPassFailure();
    }
    SmallVector<int64_t> ranks;
    for (Type type : func.getArgumentTypes()) {
      if (auto memref = dyn_cast<MemRefType>(type)) {
        if (!memref.getLayout().isIdentity()) {
          func.emitError("entry buffers must have the identity layout");
          return signalPassFailure();
        }
        ranks.push_back(memref.getRank());
      } else if (type.isIndex()) {
        ranks.push_back(-1);
      } else {
        func.emitError("entry argument of unsupported type ") << type;
        return signalPassFailure();
      }
    }
    OpBuilder b(&getContext());
    func->setAttr(moir::attrs::abiName(), b.getDenseI64ArrayAttr(ranks));
    getOperation().walk([&](memref::CopyOp copy) {
      b.setInsertionPoint(copy);
      linalg::CopyOp::create(b, copy.getLoc(), copy.getSource(), copy.getTarget());
      copy.erase();
    });
  }
};

struct CPUExportEntryPass : moir::impl::CPUExportEntryPassBase<CPUExportEntryPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto forward = module.lookupSymbol<LLVM::LLVMFuncOp>("forward");
    auto abi = forward ? forward->getAttrOfType<DenseI64ArrayAttr>(moir::attrs::abiName()) : nullptr;
    if (!abi) {
      module.emitError("no lowered @forward with a moir.abi attribute");
      return signalPassFailure();
    }
    MLIRContext *ctx = &getContext();
    OpBuilder b(ctx);
    b.setInsertionPointToEnd(module.getBody());
    Location loc = forward.getLoc();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto i64 = IntegerType::get(ctx, 64);
    auto entry = LLVM::LLVMFuncOp::create(
        b, loc, "moir_forward", LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), {ptr}));
    Block *body = entry.addEntryBlock(b);
    b.setInsertionPointToStart(body);
    Value argv = body->getArgument(0);
    SmallVector<Value> args;
    auto field = [&](Value base, int64_t index, Type type) -> Value {
      Value p = LLVM::GEPOp::create(b, loc, ptr, type, base, ArrayRef<LLVM::GEPArg>{index});
      return LLVM::LoadOp::create(b, loc, type, p);
    };
    for (auto [i, rank] : llvm::enumerate(abi.asArrayRef())) {
      Value p = field(argv, i, ptr);
      if (rank < 0) {
        args.push_back(LLVM::LoadOp::create(b, loc, i64, p));
        continue;
      }
      // {ptr allocated, ptr aligned, i64 offset, i64 sizes[rank], i64 strides[rank]}
      // laid out as consecutive 8-byte words.
      Value allocated = LLVM::LoadOp::create(b, loc, ptr, p);
      args.push_back(allocated);
      args.push_back(field(p, 1, ptr));
      for (int64_t w = 0; w < 1 + 2 * rank; ++w)
        args.push_back(field(p, 2 + w, i64));
    }
    if (args.size() != forward.getNumArguments()) {
      forward.emitError() << moir::attrs::abiName() << " does not match the lowered signature";
      return signalPassFailure();
    }
    LLVM::CallOp::create(b, loc, forward, args);
    LLVM::ReturnOp::create(b, loc, ValueRange{});
    // Functions outlined per layer (moir-outline-layers marks them
    // moir.layer) stay out of line: LLVM optimizes them one at a time.
    module.walk([](LLVM::LLVMFuncOp f) {
      if (f->hasAttr(moir::attrs::layerName()))
        f.setNoInline(true);
    });
  }
};

/// Sequential loops for `op`, its leading parallel dimensions (all but the
/// innermost loop) merged into one scf.parallel: the innermost loop stays a
/// plain loop LLVM can vectorize, and a reduction stays sequential.
LogicalResult parallelizeOuterLoops(RewriterBase &rewriter, linalg::LinalgOp op) {
  auto iterators = op.getIteratorTypesArray();
  size_t leading = 0;
  while (leading + 1 < iterators.size() && iterators[leading] == utils::IteratorType::parallel)
    ++leading;
  FailureOr<linalg::LinalgLoops> loops = linalg::linalgOpToLoops(rewriter, op);
  if (failed(loops))
    return failure();
  if (leading == 0)
    return success();
  SmallVector<scf::ForOp> nest;
  for (size_t i = 0; i < leading; ++i) {
    auto loop = dyn_cast<scf::ForOp>((*loops)[i]);
    if (!loop || loop.getNumRegionIterArgs() != 0)
      return failure();
    nest.push_back(loop);
  }
  SmallVector<Value> lbs, ubs, steps;
  for (scf::ForOp loop : nest) {
    lbs.push_back(loop.getLowerBound());
    ubs.push_back(loop.getUpperBound());
    steps.push_back(loop.getStep());
  }
  rewriter.setInsertionPoint(nest.front());
  auto parallel = scf::ParallelOp::create(rewriter, op.getLoc(), lbs, ubs, steps);
  for (auto [loop, iv] : llvm::zip(nest, parallel.getInductionVars()))
    rewriter.replaceAllUsesWith(loop.getInductionVar(), iv);
  Block *from = nest.back().getBody();
  Block *to = parallel.getBody();
  to->getOperations().splice(to->getTerminator()->getIterator(), from->getOperations(),
                             from->begin(), std::prev(from->end()));
  rewriter.eraseOp(nest.front());
  return success();
}

struct CPUParallelizePass : moir::impl::CPUParallelizePassBase<CPUParallelizePass> {
  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> marked;
    getOperation()->walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(moir::attrs::parallelName()) && op.hasPureBufferSemantics())
        marked.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : marked) {
      rewriter.setInsertionPoint(op);
      if (failed(parallelizeOuterLoops(rewriter, op))) {
        op->emitError("cannot give this op parallel loops");
        return signalPassFailure();
      }
      rewriter.eraseOp(op);
    }
  }
};

} // namespace
