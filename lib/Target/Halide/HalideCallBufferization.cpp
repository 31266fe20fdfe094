//===- HalideCallBufferization.cpp - moir.halide_call on buffers ----------===//
//
// A Halide kernel compiled ahead of time is `int f(halide_buffer_t *...)`:
// each buffer a descriptor of its host pointer, element type and, per
// dimension (innermost first), min, extent and stride in elements. The call
// bufferizes into descriptors built on the stack from the operands'
// buffers (their strided metadata: no copy unless the innermost stride is
// not 1), a new buffer per result, the call, and an assertion that it
// returned 0 (Halide has printed what failed).
//
// The descriptors follow HalideRuntime.h (Halide 21): halide_buffer_t is
// {u64 device, ptr device_interface, ptr host, u64 flags, {u8 code, u8
// bits, u16 lanes} type, i32 dimensions, ptr dim, ptr padding};
// halide_dimension_t is {i32 min, i32 extent, i32 stride, u32 flags}.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/Halide/HalideTarget.h"
#include "moir/Target/Host/Host.h"

#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::bufferization;

namespace {

/// halide_type_code_t and bits of an element type.
std::pair<int, int> halideType(Type e) {
  if (e.isBF16())
    return {4, 16};
  if (isa<FloatType>(e))
    return {2, static_cast<int>(e.getIntOrFloatBitWidth())};
  return {0, static_cast<int>(e.getIntOrFloatBitWidth())};
}

struct Descriptors {
  LLVM::LLVMStructType buffer, dim;
  Type ptr, i8, i16, i32, i64;
  explicit Descriptors(MLIRContext *ctx) {
    ptr = LLVM::LLVMPointerType::get(ctx);
    i8 = IntegerType::get(ctx, 8);
    i16 = IntegerType::get(ctx, 16);
    i32 = IntegerType::get(ctx, 32);
    i64 = IntegerType::get(ctx, 64);
    buffer = LLVM::LLVMStructType::getLiteral(ctx, {i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr});
    dim = LLVM::LLVMStructType::getLiteral(ctx, {i32, i32, i32, i32});
  }
};

/// Builds the descriptor of `memref` (stack storage in `func`'s entry
/// block) and returns its address.
Value describe(RewriterBase &rewriter, Location loc, func::FuncOp func, Value memref,
               const Descriptors &d, bool input) {
  auto type = cast<MemRefType>(memref.getType());
  int64_t rank = type.getRank();
  Value bufferSlot, dimSlots;
  {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(&func.getBody().front());
    Value one = LLVM::ConstantOp::create(rewriter, loc, d.i64, rewriter.getI64IntegerAttr(1));
    bufferSlot = LLVM::AllocaOp::create(rewriter, loc, d.ptr, d.buffer, one, 8);
    Value count = LLVM::ConstantOp::create(rewriter, loc, d.i64,
                                           rewriter.getI64IntegerAttr(std::max<int64_t>(rank, 1)));
    dimSlots = LLVM::AllocaOp::create(rewriter, loc, d.ptr, d.dim, count, 8);
  }
  auto constant = [&](Type t, int64_t v) -> Value {
    return LLVM::ConstantOp::create(rewriter, loc, t, rewriter.getIntegerAttr(t, v));
  };
  auto store = [&](Value base, Type elem, ArrayRef<LLVM::GEPArg> path, Value v) {
    Value at = LLVM::GEPOp::create(rewriter, loc, d.ptr, elem, base, path);
    LLVM::StoreOp::create(rewriter, loc, v, at);
  };
  auto toInt = [&](Value index, Type t) -> Value {
    return arith::IndexCastOp::create(rewriter, loc, t, index);
  };

  auto meta = memref::ExtractStridedMetadataOp::create(rewriter, loc, memref);
  Value aligned = memref::ExtractAlignedPointerAsIndexOp::create(rewriter, loc, memref);
  int64_t bytes = type.getElementType().getIntOrFloatBitWidth() / 8;
  Value start = arith::AddIOp::create(
      rewriter, loc, aligned,
      arith::MulIOp::create(rewriter, loc, meta.getOffset(),
                            arith::ConstantIndexOp::create(rewriter, loc, bytes)));
  Value host = LLVM::IntToPtrOp::create(rewriter, loc, d.ptr, toInt(start, d.i64));
  for (int64_t h = 0; h < rank; ++h) {
    int64_t m = rank - 1 - h; // Halide's dimension h is MLIR's m
    store(dimSlots, d.dim, {h, 0}, constant(d.i32, 0));
    store(dimSlots, d.dim, {h, 1}, toInt(meta.getSizes()[m], d.i32));
    store(dimSlots, d.dim, {h, 2}, toInt(meta.getStrides()[m], d.i32));
    store(dimSlots, d.dim, {h, 3}, constant(d.i32, 0));
  }
  auto [code, bits] = halideType(type.getElementType());
  store(bufferSlot, d.buffer, {0, 0}, constant(d.i64, 0));
  store(bufferSlot, d.buffer, {0, 1}, LLVM::ZeroOp::create(rewriter, loc, d.ptr));
  store(bufferSlot, d.buffer, {0, 2}, host);
  // An input's host data is current (halide_buffer_flag_host_dirty), so a
  // device kernel copies it over; a result starts clean.
  store(bufferSlot, d.buffer, {0, 3}, constant(d.i64, input ? 1 : 0));
  store(bufferSlot, d.buffer, {0, 4}, constant(d.i8, code));
  store(bufferSlot, d.buffer, {0, 5}, constant(d.i8, bits));
  store(bufferSlot, d.buffer, {0, 6}, constant(d.i16, 1));
  store(bufferSlot, d.buffer, {0, 7}, constant(d.i32, rank));
  store(bufferSlot, d.buffer, {0, 8}, dimSlots);
  store(bufferSlot, d.buffer, {0, 9}, LLVM::ZeroOp::create(rewriter, loc, d.ptr));
  return bufferSlot;
}

/// Whether Halide can read `type` in place: innermost stride 1 (statically).
bool unitInnerStride(MemRefType type) {
  if (type.getRank() == 0 || type.getLayout().isIdentity())
    return true;
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(type.getStridesAndOffset(strides, offset)))
    return false;
  return strides.back() == 1;
}

struct HalideCallBufferization
    : BufferizableOpInterface::ExternalModel<HalideCallBufferization, moir::HalideCallOp> {
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
    auto call = cast<moir::HalideCallOp>(op);
    auto func = op->getParentOfType<func::FuncOp>();
    if (!func)
      return op->emitOpError("must be inside a function");
    Location loc = op->getLoc();
    Descriptors d(op->getContext());
    SmallVector<Value> buffers, args;
    for (Value input : call.getInputs()) {
      FailureOr<Value> buffer = getBuffer(rewriter, input, options, state);
      if (failed(buffer))
        return failure();
      buffers.push_back(unitInnerStride(cast<MemRefType>(buffer->getType()))
                            ? *buffer
                            : moir::host::copyToIdentityLayout(rewriter, loc, *buffer));
    }
    // The results' dynamic dimensions are the first input's (every kernel's
    // results keep its leading dimensions: tokens).
    SmallVector<Value> outs;
    for (Type type : call.getResultTypes()) {
      auto resultType = cast<RankedTensorType>(type);
      SmallVector<Value> sizes;
      for (int64_t i = 0; i < resultType.getRank(); ++i)
        if (resultType.isDynamicDim(i))
          sizes.push_back(memref::DimOp::create(rewriter, loc, buffers.front(), i));
      outs.push_back(memref::AllocOp::create(
          rewriter, loc, MemRefType::get(resultType.getShape(), resultType.getElementType()),
          sizes, rewriter.getI64IntegerAttr(64)));
    }
    for (Value b : buffers)
      args.push_back(describe(rewriter, loc, func, b, d, /*input=*/true));
    for (Value out : outs)
      args.push_back(describe(rewriter, loc, func, out, d, /*input=*/false));

    auto callee = moir::host::declareFunction(
        op, call.getCallee(),
        FunctionType::get(op->getContext(), SmallVector<Type>(args.size(), d.ptr), {d.i32}));
    auto check = [&](Value rc, const Twine &what) {
      Value ok = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, rc,
                                       arith::ConstantIntOp::create(rewriter, loc, 0, 32));
      cf::AssertOp::create(rewriter, loc, ok, what.str());
    };
    check(func::CallOp::create(rewriter, loc, callee, args).getResult(0),
          "Halide kernel " + call.getCallee() + " failed");
    if (call.getParams().get("device")) {
      // A device kernel leaves its results on the device and every buffer
      // with a device allocation: copy the results back, free them all
      // (the descriptors die with this call).
      auto runtime = [&](StringRef name) {
        return moir::host::declareFunction(
            op, name, FunctionType::get(op->getContext(), {d.ptr, d.ptr}, {d.i32}));
      };
      Value none = LLVM::ZeroOp::create(rewriter, loc, d.ptr);
      for (Value desc : llvm::drop_begin(args, buffers.size()))
        check(func::CallOp::create(rewriter, loc, runtime("halide_copy_to_host"),
                                   ValueRange{none, desc})
                  .getResult(0),
              "Halide kernel " + call.getCallee() + ": copying a result to the host failed");
      for (Value desc : args)
        func::CallOp::create(rewriter, loc, runtime("halide_device_free"), ValueRange{none, desc});
    }
    replaceOpWithBufferizedValues(rewriter, op, outs);
    return success();
  }
};

} // namespace

void moir::halide::registerHalideCallBufferization(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, moir::MoIRDialect *) {
    moir::HalideCallOp::attachInterface<HalideCallBufferization>(*ctx);
  });
}
