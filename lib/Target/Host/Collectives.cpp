//===- Collectives.cpp - ops that call the runtime, on buffers -------------===//
//
// llm.all_reduce bufferizes in place into a call of the runtime's
// moir_rt_all_reduce_sum_f32 (runtime/include/moir/comm.h) on the tensor's
// buffer, llm.all_gather into moir_rt_all_gather_f32 writing a new buffer,
// and moe.record_routing into moir_rt_record_routing (the routing
// recorder). Compiled code resolves these symbols from libmoir_runtime when
// the runtime loads it, as it does the thread pool's entry points: artifacts
// link no communication library, and the runtime picks the transport.
//
//===----------------------------------------------------------------------===//

#include "LLM/IR/LLMDialect.h"
#include "LLM/IR/LLMOps.h"
#include "MoE/IR/MoEDialect.h"
#include "MoE/IR/MoEOps.h"
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

/// `void name(types...)`, declared once in the module holding `op`.
func::FuncOp runtimeCallee(Operation *op, StringRef name, TypeRange types) {
  return moir::host::declareFunction(op, name, FunctionType::get(op->getContext(), types, {}));
}

/// `buffer` as one contiguous run of elements for a C function: its
/// pointer (!llvm.ptr), element count (i64) and the buffer holding them
/// (a packed copy of a strided buffer, else `buffer` itself).
struct ContiguousBuffer {
  Value pointer, count, flat;
};
ContiguousBuffer contiguous(RewriterBase &rewriter, Location loc, Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  Value count = arith::ConstantIndexOp::create(rewriter, loc, 1);
  for (int64_t d = 0; d < type.getRank(); ++d)
    count = arith::MulIOp::create(rewriter, loc, count,
                                  memref::DimOp::create(rewriter, loc, buffer, d));
  Value flat = type.getLayout().isIdentity()
                   ? buffer
                   : moir::host::copyToIdentityLayout(rewriter, loc, buffer);
  Value address = memref::ExtractAlignedPointerAsIndexOp::create(rewriter, loc, flat);
  Value pointer = LLVM::IntToPtrOp::create(
      rewriter, loc, LLVM::LLVMPointerType::get(rewriter.getContext()),
      arith::IndexCastOp::create(rewriter, loc, rewriter.getI64Type(), address).getResult());
  return {pointer, arith::IndexCastOp::create(rewriter, loc, rewriter.getI64Type(), count), flat};
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
    ContiguousBuffer run = contiguous(rewriter, loc, *buffer);
    auto ptr = LLVM::LLVMPointerType::get(op->getContext());
    func::CallOp::create(rewriter, loc,
                         runtimeCallee(op, "moir_rt_all_reduce_sum_f32", {ptr, rewriter.getI64Type()}),
                         ValueRange{run.pointer, run.count});
    if (run.flat != *buffer)
      memref::CopyOp::create(rewriter, loc, run.flat, *buffer);
    replaceOpWithBufferizedValues(rewriter, op, *buffer);
    return success();
  }
};

/// llm.all_gather reads its input and writes a new buffer of the result's
/// shape through `void moir_rt_all_gather_f32(const float *in, float *out,
/// int64_t rows, int64_t cols, int64_t unit)` (rows: the product of the
/// leading dimensions, cols: the last).
struct AllGatherBufferization
    : BufferizableOpInterface::ExternalModel<AllGatherBufferization, moir::llm::AllGatherOp> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &, const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &, const AnalysisState &) const {
    return false;
  }
  AliasingValueList getAliasingValues(Operation *, OpOperand &, const AnalysisState &) const {
    return {};
  }
  bool bufferizesToAllocation(Operation *, Value) const { return true; }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter, const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto gather = cast<moir::llm::AllGatherOp>(op);
    FailureOr<Value> buffer = getBuffer(rewriter, gather.getInput(), options, state);
    if (failed(buffer))
      return failure();
    Location loc = op->getLoc();
    ContiguousBuffer in = contiguous(rewriter, loc, *buffer);
    auto resultType = gather.getResult().getType();
    SmallVector<Value> dynamicSizes;
    Value rows = arith::ConstantIndexOp::create(rewriter, loc, 1);
    for (int64_t d = 0; d < resultType.getRank(); ++d) {
      if (d + 1 == resultType.getRank())
        break;
      Value size = memref::DimOp::create(rewriter, loc, *buffer, d);
      if (resultType.isDynamicDim(d))
        dynamicSizes.push_back(size);
      rows = arith::MulIOp::create(rewriter, loc, rows, size);
    }
    auto outType = MemRefType::get(resultType.getShape(), resultType.getElementType());
    Value out = memref::AllocOp::create(rewriter, loc, outType, dynamicSizes,
                                        rewriter.getI64IntegerAttr(64));
    ContiguousBuffer target = contiguous(rewriter, loc, out);
    Type i64 = rewriter.getI64Type();
    auto constant = [&](int64_t v) {
      return arith::ConstantOp::create(rewriter, loc, rewriter.getI64IntegerAttr(v)).getResult();
    };
    auto ptr = LLVM::LLVMPointerType::get(op->getContext());
    func::CallOp::create(
        rewriter, loc, runtimeCallee(op, "moir_rt_all_gather_f32", {ptr, ptr, i64, i64, i64}),
        ValueRange{in.pointer, target.pointer,
                   arith::IndexCastOp::create(rewriter, loc, i64, rows).getResult(),
                   constant(resultType.getShape().back()), constant(gather.getUnit())});
    replaceOpWithBufferizedValues(rewriter, op, out);
    return success();
  }
};

/// moe.record_routing reads its ids and calls
/// `void moir_rt_record_routing(const int32_t *ids, int64_t count,
/// int64_t top_k, int64_t experts)`.
struct RecordRoutingBufferization
    : BufferizableOpInterface::ExternalModel<RecordRoutingBufferization,
                                             moir::moe::RecordRoutingOp> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &, const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &, const AnalysisState &) const {
    return false;
  }
  AliasingValueList getAliasingValues(Operation *, OpOperand &, const AnalysisState &) const {
    return {};
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter, const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto record = cast<moir::moe::RecordRoutingOp>(op);
    FailureOr<Value> buffer = getBuffer(rewriter, record.getIds(), options, state);
    if (failed(buffer))
      return failure();
    Location loc = op->getLoc();
    ContiguousBuffer run = contiguous(rewriter, loc, *buffer);
    Type i64 = rewriter.getI64Type();
    auto constant = [&](int64_t v) {
      return arith::ConstantOp::create(rewriter, loc, rewriter.getI64IntegerAttr(v)).getResult();
    };
    auto ptr = LLVM::LLVMPointerType::get(op->getContext());
    func::CallOp::create(
        rewriter, loc, runtimeCallee(op, "moir_rt_record_routing", {ptr, i64, i64, i64}),
        ValueRange{run.pointer, run.count,
                   constant(cast<MemRefType>(buffer->getType()).getDimSize(1)),
                   constant(record.getNumExperts())});
    rewriter.eraseOp(op);
    return success();
  }
};

} // namespace

func::FuncOp moir::host::declareFunction(Operation *op, StringRef name, FunctionType type) {
  auto module = op->getParentOfType<ModuleOp>();
  if (auto existing = module.lookupSymbol<func::FuncOp>(name))
    return existing;
  OpBuilder b(module.getBodyRegion());
  auto callee = func::FuncOp::create(b, module.getLoc(), name, type);
  callee.setPrivate();
  return callee;
}

Value moir::host::copyToIdentityLayout(RewriterBase &rewriter, Location loc, Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamicSizes.push_back(memref::DimOp::create(rewriter, loc, buffer, d));
  Value copy = memref::AllocOp::create(
      rewriter, loc, MemRefType::get(type.getShape(), type.getElementType()), dynamicSizes);
  memref::CopyOp::create(rewriter, loc, buffer, copy);
  return copy;
}

void moir::host::registerCollectiveBufferization(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, moir::llm::LLMDialect *) {
    moir::llm::AllReduceOp::attachInterface<AllReduceBufferization>(*ctx);
    moir::llm::AllGatherOp::attachInterface<AllGatherBufferization>(*ctx);
  });
  registry.addExtension(+[](MLIRContext *ctx, moir::moe::MoEDialect *) {
    moir::moe::RecordRoutingOp::attachInterface<RecordRoutingBufferization>(*ctx);
  });
}
