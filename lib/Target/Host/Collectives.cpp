//===- Collectives.cpp - collectives on buffers: calls into the runtime ----===//
//
// llm.all_reduce bufferizes in place into a call of the runtime's
// moir_rt_all_reduce_sum_f32 (runtime/include/moir/comm.h) on the tensor's
// buffer. Compiled code resolves that symbol from libmoir_runtime when the
// runtime loads it, as it does the thread pool's entry points: artifacts link
// no communication library, and the runtime picks the transport.
//
//===----------------------------------------------------------------------===//

#include "LLM/IR/LLMDialect.h"
#include "LLM/IR/LLMOps.h"
#include "moir/Target/Host/Host.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/DialectRegistry.h"

using namespace mlir;
using namespace mlir::bufferization;

namespace {

constexpr StringLiteral kAllReduceSymbol = "moir_rt_all_reduce_sum_f32";

/// `void moir_rt_all_reduce_sum_f32(float *data, int64_t count)`, declared
/// once in the module holding `op`.
func::FuncOp allReduceCallee(Operation *op) {
  auto module = op->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(kAllReduceSymbol))
    return existing;
  OpBuilder b(module.getBodyRegion());
  MLIRContext *ctx = op->getContext();
  auto type = b.getFunctionType({LLVM::LLVMPointerType::get(ctx), b.getI64Type()}, {});
  auto callee = func::FuncOp::create(b, module.getLoc(), kAllReduceSymbol, type);
  callee.setPrivate();
  return callee;
}

struct AllReduceBufferization
    : BufferizableOpInterface::ExternalModel<AllReduceBufferization, moir::llm::AllReduceOp> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &, const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &, const AnalysisState &) const {
    return true;
  }
  AliasingValueList getAliasingValues(Operation *op, OpOperand &, const AnalysisState &) const {
    return {{op->getResult(0), BufferRelation::Equivalent}};
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter, const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto reduce = cast<moir::llm::AllReduceOp>(op);
    FailureOr<Value> buffer = getBuffer(rewriter, reduce.getInput(), options, state);
    if (failed(buffer))
      return failure();
    Location loc = op->getLoc();
    auto type = cast<MemRefType>(buffer->getType());
    SmallVector<Value> dynamicSizes;
    Value count = arith::ConstantIndexOp::create(rewriter, loc, 1);
    for (int64_t d = 0; d < type.getRank(); ++d) {
      Value size = memref::DimOp::create(rewriter, loc, *buffer, d);
      if (type.isDynamicDim(d))
        dynamicSizes.push_back(size);
      count = arith::MulIOp::create(rewriter, loc, count, size);
    }
    // The runtime takes one contiguous run of floats: a strided buffer goes
    // through a packed copy.
    Value flat = *buffer;
    bool contiguous = type.getLayout().isIdentity();
    if (!contiguous) {
      flat = memref::AllocOp::create(rewriter, loc,
                                     MemRefType::get(type.getShape(), type.getElementType()),
                                     dynamicSizes);
      memref::CopyOp::create(rewriter, loc, *buffer, flat);
    }
    Value address = memref::ExtractAlignedPointerAsIndexOp::create(rewriter, loc, flat);
    Value pointer = LLVM::IntToPtrOp::create(
        rewriter, loc, LLVM::LLVMPointerType::get(op->getContext()),
        arith::IndexCastOp::create(rewriter, loc, rewriter.getI64Type(), address).getResult());
    Value n = arith::IndexCastOp::create(rewriter, loc, rewriter.getI64Type(), count);
    func::CallOp::create(rewriter, loc, allReduceCallee(op), ValueRange{pointer, n});
    if (!contiguous)
      memref::CopyOp::create(rewriter, loc, flat, *buffer);
    replaceOpWithBufferizedValues(rewriter, op, *buffer);
    return success();
  }
};

} // namespace

void moir::host::registerCollectiveBufferization(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, moir::llm::LLMDialect *) {
    moir::llm::AllReduceOp::attachInterface<AllReduceBufferization>(*ctx);
  });
}
