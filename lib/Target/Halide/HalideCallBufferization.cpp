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
// A Vulkan kernel's buffers are staged by the call itself: each buffer's
// bytes are copied into scratch host memory padded to a multiple of 64
// bytes, which Halide copies to (or allocates on) the device as a buffer of
// bytes, and the kernel reads and writes crops of those (its own shapes, at
// offset 0). Halide 21's Vulkan memory allocator overruns or misbinds
// buffers whose size is not a multiple of the driver's 64-byte rounding on
// lavapipe (docs/halide.md); staged like this, every allocation it makes,
// device and staging alike, is such a multiple.
//
// A resident input (a weight: the op's `resident`) of a device kernel is
// not copied per call: `moir_hl_resident` (ResidentWeights.cpp, defined
// once the module is in the LLVM dialect) copies it to the device the first
// time any call reads that buffer, staged as above on Vulkan, and returns
// the descriptor it keeps for it, which every later call passes as is.
//
// moirc --target=halide (moir-halide-keep-activations, OpenCL): a call
// marked `moir.keep_results` hands each result's device buffer to the
// activation table (`moir_hl_keep`, KeepActivations.cpp) instead of freeing
// it, copying it back only where `moir.host_results` says; its
// `moir.device_inputs` are bound to the buffers kept for them
// (`moir_hl_bind`), so Halide copies nothing, and let go after the call.
//
// The descriptors follow HalideRuntime.h (Halide 21): halide_buffer_t is
// {u64 device, ptr device_interface, ptr host, u64 flags, {u8 code, u8
// bits, u16 lanes} type, i32 dimensions, ptr dim, ptr padding};
// halide_dimension_t is {i32 min, i32 extent, i32 stride, u32 flags}.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/Halide/HalideTarget.h"
#include "moir/Target/Host/Host.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "llvm/Support/xxhash.h"


using namespace mlir;
using namespace mlir::bufferization;

namespace {

// halide_buffer_flags
constexpr int64_t kHostDirty = 1, kDeviceDirty = 2;

/// halide_type_code_t and bits of an element type for a kernel on `device`
/// (empty: the host). A device kernel reads 16-bit floats as their bits
/// and widens them itself (Generator/Kernels.cpp, input): bf16 as uint16,
/// and on OpenCL f16 as int16.
std::pair<int, int> halideType(Type e, StringRef device) {
  if (e.isBF16())
    return {device.empty() ? 4 : 1, 16};
  if (e.isF16() && device == "opencl")
    return {0, 16};
  // FP8 codes are bytes to Halide (int8 buffers its kernels decode).
  if (isa<FloatType>(e) && e.getIntOrFloatBitWidth() == 8)
    return {0, 8};
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

/// The bytes a strided `memref` spans (0 when it has no elements).
Value spanBytes(RewriterBase &rewriter, Location loc, Value memref) {
  auto type = cast<MemRefType>(memref.getType());
  auto meta = memref::ExtractStridedMetadataOp::create(rewriter, loc, memref);
  auto c = [&](int64_t v) { return arith::ConstantIndexOp::create(rewriter, loc, v); };
  Value last = c(0), empty = arith::ConstantIntOp::create(rewriter, loc, 0, 1);
  for (int64_t m = 0; m < type.getRank(); ++m) {
    Value size = meta.getSizes()[m];
    empty = arith::OrIOp::create(
        rewriter, loc, empty,
        arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, size, c(0)));
    last = arith::AddIOp::create(
        rewriter, loc, last,
        arith::MulIOp::create(rewriter, loc, arith::SubIOp::create(rewriter, loc, size, c(1)),
                              meta.getStrides()[m]));
  }
  Value bytes = arith::MulIOp::create(
      rewriter, loc, arith::AddIOp::create(rewriter, loc, last, c(1)),
      c(type.getElementType().getIntOrFloatBitWidth() / 8));
  bytes = arith::SelectOp::create(rewriter, loc, empty, c(0), bytes);
  return arith::IndexCastOp::create(rewriter, loc, rewriter.getI64Type(), bytes);
}

/// One buffer of a Vulkan call staged through padded scratch memory.
struct Staged {
  Value memref;  // MoIR's buffer
  Value exact;   // its descriptor, which the kernel gets (a crop of `padded`)
  Value padded;  // descriptor of `scratch` as bytes, padded to 64
  Value scratch; // host pointer
  Value bytes;   // the buffer's span in bytes (i64)
};

/// What a call's bufferization emits: descriptors, calls into the kernel
/// and Halide's runtime, and their checks.
struct Emitter {
  RewriterBase &rewriter;
  Location loc;
  Operation *op;
  func::FuncOp func;
  StringRef callee;
  Descriptors d;
  StringRef device; // the device the kernel runs on (its `device` param); empty: the host

  Value constant(Type t, int64_t v) {
    return LLVM::ConstantOp::create(rewriter, loc, t, rewriter.getIntegerAttr(t, v));
  }
  Value null() { return LLVM::ZeroOp::create(rewriter, loc, d.ptr); }
  void store(Value base, Type elem, ArrayRef<LLVM::GEPArg> path, Value v) {
    Value at = LLVM::GEPOp::create(rewriter, loc, d.ptr, elem, base, path);
    LLVM::StoreOp::create(rewriter, loc, v, at);
  }
  /// A descriptor's halide_buffer_flags.
  void setFlags(Value desc, int64_t flags) { store(desc, d.buffer, {0, 3}, constant(d.i64, flags)); }
  /// Calls the external function `name` on `args` (declared from their
  /// types); its result, if `result` is set.
  Value call(StringRef name, ValueRange args, Type result = {}) {
    SmallVector<Type> results;
    if (result)
      results.push_back(result);
    auto fn = moir::host::declareFunction(
        op, name, FunctionType::get(op->getContext(), TypeRange(args), results));
    auto c = func::CallOp::create(rewriter, loc, fn, args);
    return result ? c.getResult(0) : Value();
  }
  /// Asserts that a Halide return code is 0 (Halide has printed what failed).
  void check(Value rc, const Twine &what) {
    Value ok = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, rc,
                                     arith::ConstantIntOp::create(rewriter, loc, 0, 32));
    cf::AssertOp::create(rewriter, loc, ok, what.str());
  }
  /// Calls the runtime's `name` on (user context, args...) and checks it.
  void runtime(StringRef name, ValueRange args, const Twine &what) {
    SmallVector<Value> all = {null()};
    llvm::append_range(all, args);
    check(call(name, all, d.i32), "Halide kernel " + callee + ": " + what);
  }
  /// The address of `memref`'s first element.
  Value hostPointer(Value memref) {
    auto meta = memref::ExtractStridedMetadataOp::create(rewriter, loc, memref);
    Value aligned = memref::ExtractAlignedPointerAsIndexOp::create(rewriter, loc, memref);
    int64_t bytes = cast<MemRefType>(memref.getType()).getElementType().getIntOrFloatBitWidth() / 8;
    Value start = arith::AddIOp::create(
        rewriter, loc, aligned,
        arith::MulIOp::create(rewriter, loc, meta.getOffset(),
                              arith::ConstantIndexOp::create(rewriter, loc, bytes)));
    return LLVM::IntToPtrOp::create(
        rewriter, loc, d.ptr, Value(arith::IndexCastOp::create(rewriter, loc, d.i64, start)));
  }
  /// Stack storage in the entry block for a descriptor and its `rank`
  /// dimensions (at least one).
  std::pair<Value, Value> slots(int64_t rank) {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(&func.getBody().front());
    Value buffer = LLVM::AllocaOp::create(rewriter, loc, d.ptr, d.buffer, constant(d.i64, 1), 8);
    Value dims = LLVM::AllocaOp::create(rewriter, loc, d.ptr, d.dim,
                                        constant(d.i64, std::max<int64_t>(rank, 1)), 8);
    return {buffer, dims};
  }
  /// Fills descriptor `buffer` (dimensions in `dims`): no device
  /// allocation, `host`, `flags`, the type and the rank.
  void fill(Value buffer, Value dims, Value host, int64_t flags, int code, int bits,
            int64_t rank) {
    store(buffer, d.buffer, {0, 0}, constant(d.i64, 0));
    store(buffer, d.buffer, {0, 1}, null());
    store(buffer, d.buffer, {0, 2}, host);
    store(buffer, d.buffer, {0, 3}, constant(d.i64, flags));
    store(buffer, d.buffer, {0, 4}, constant(d.i8, code));
    store(buffer, d.buffer, {0, 5}, constant(d.i8, bits));
    store(buffer, d.buffer, {0, 6}, constant(d.i16, 1));
    store(buffer, d.buffer, {0, 7}, constant(d.i32, rank));
    store(buffer, d.buffer, {0, 8}, dims);
    store(buffer, d.buffer, {0, 9}, null());
  }

  /// The descriptor of `memref` (stack storage in the entry block).
  Value describe(Value memref, bool input) {
    auto type = cast<MemRefType>(memref.getType());
    int64_t rank = type.getRank();
    auto [buffer, dims] = slots(rank);
    auto toI32 = [&](Value index) -> Value {
      return arith::IndexCastOp::create(rewriter, loc, d.i32, index);
    };
    auto meta = memref::ExtractStridedMetadataOp::create(rewriter, loc, memref);
    Value host = hostPointer(memref);
    for (int64_t h = 0; h < rank; ++h) {
      int64_t m = rank - 1 - h; // Halide's dimension h is MLIR's m
      store(dims, d.dim, {h, 0}, constant(d.i32, 0));
      store(dims, d.dim, {h, 1}, toI32(meta.getSizes()[m]));
      store(dims, d.dim, {h, 2}, toI32(meta.getStrides()[m]));
      store(dims, d.dim, {h, 3}, constant(d.i32, 0));
    }
    auto [code, bits] = halideType(type.getElementType(), device);
    // An input's host data is current (halide_buffer_flag_host_dirty), so a
    // device kernel copies it over; a result starts clean.
    fill(buffer, dims, host, input ? kHostDirty : 0, code, bits, rank);
    return buffer;
  }

  /// The bytes a staged buffer of `bytes` (i64) takes: max(round_up(bytes,
  /// 64), 64).
  Value paddedBytes(Value bytes) {
    Value padded = LLVM::AndOp::create(
        rewriter, loc, LLVM::AddOp::create(rewriter, loc, bytes, constant(d.i64, 63)),
        constant(d.i64, ~int64_t(63)));
    return arith::MaxUIOp::create(rewriter, loc, padded, constant(d.i64, 64));
  }

  /// Stages `memref` (described by `exact`) for a Vulkan call: scratch host
  /// memory of its span rounded up to 64 bytes (at least 64), the bytes
  /// copied there if it is an input, the padded buffer copied to (or
  /// allocated on) the device, and `exact` made a crop of it.
  Staged stage(Value memref, Value exact, bool input) {
    Staged s{memref, exact, {}, {}, spanBytes(rewriter, loc, memref)};
    Value padded = paddedBytes(s.bytes);
    s.scratch = call("halide_malloc", ValueRange{null(), padded}, d.ptr);
    Value allocated = LLVM::ICmpOp::create(rewriter, loc, LLVM::ICmpPredicate::ne, s.scratch, null());
    cf::AssertOp::create(rewriter, loc, allocated, "Halide kernel staging: out of host memory");
    if (input)
      LLVM::MemcpyOp::create(rewriter, loc, s.scratch, hostPointer(memref), s.bytes,
                             /*isVolatile=*/false);
    // The padded descriptor: uint8, as many dimensions as the exact one (a
    // crop keeps the dimensionality), the first spanning the bytes.
    int64_t rank = std::max<int64_t>(cast<MemRefType>(memref.getType()).getRank(), 1);
    Value dims;
    std::tie(s.padded, dims) = slots(rank);
    Value padded32 = LLVM::TruncOp::create(rewriter, loc, d.i32, padded);
    for (int64_t h = 0; h < rank; ++h) {
      store(dims, d.dim, {h, 0}, constant(d.i32, 0));
      store(dims, d.dim, {h, 1}, h == 0 ? padded32 : constant(d.i32, 1));
      store(dims, d.dim, {h, 2}, h == 0 ? constant(d.i32, 1) : padded32);
      store(dims, d.dim, {h, 3}, constant(d.i32, 0));
    }
    fill(s.padded, dims, s.scratch, input ? kHostDirty : 0, /*halide_type_uint*/ 1, 8, rank);
    Value vulkan = call("halide_vulkan_device_interface", {}, d.ptr);
    runtime(input ? "halide_copy_to_device" : "halide_device_malloc", {s.padded, vulkan},
            Twine(input ? "copying an input to" : "allocating a result on") + " the device failed");
    runtime("halide_device_crop", {s.padded, exact}, "cropping a staged buffer failed");
    return s;
  }

  /// The key a resident buffer's slot has besides its address: a hash of
  /// its memref type.
  Value signature(Value memref) {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << memref.getType();
    return constant(d.i64, static_cast<int64_t>(llvm::xxh3_64bits(text)));
  }
  Value deviceInterface() {
    return call(("halide_" + device + "_device_interface").str(), {}, d.ptr);
  }

  /// The descriptor the kernel gets for resident input `memref`, whose
  /// fresh descriptor is `exact` (made with host data to copy, unless
  /// staged, on Vulkan): the one `moir_hl_resident` keeps on the device,
  /// copied there on the first call that reads the buffer, found by its
  /// address and signature. Where the table has no room (a process with
  /// many sessions' caches), `exact` itself: the call copies it as any
  /// input. On Vulkan, where the call stages its buffers, the table's
  /// `moir_hl_resident_or_staged` stages it instead into a slot on this
  /// function's stack (`temporaries`, freed after the call: freeTemporaries).
  Value resident(Value memref, Value exact, SmallVectorImpl<Value> &temporaries) {
    Value bytes = constant(d.i64, 0), padded = constant(d.i64, 0);
    if (device != "vulkan") {
      Value kept = call(moir::halide::residentFunctionName(),
                        ValueRange{exact, deviceInterface(), signature(memref), bytes, padded},
                        d.ptr);
      Value ok = LLVM::ICmpOp::create(rewriter, loc, LLVM::ICmpPredicate::ne, kept, null());
      return LLVM::SelectOp::create(rewriter, loc, ok, kept, exact);
    }
    bytes = spanBytes(rewriter, loc, memref);
    padded = paddedBytes(bytes);
    // A slot as the table's (ResidentWeights.cpp): {key, signature, the
    // descriptor, the padded descriptor, their dimensions}, zeroed.
    auto dims = LLVM::LLVMArrayType::get(d.dim, moir::halide::kResidentMaxRank);
    auto slotType = LLVM::LLVMStructType::getLiteral(rewriter.getContext(),
                                                     {d.ptr, d.i64, d.buffer, d.buffer, dims, dims});
    Value slot;
    {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(&func.getBody().front());
      slot = LLVM::AllocaOp::create(rewriter, loc, d.ptr, slotType, constant(d.i64, 1), 8);
    }
    LLVM::StoreOp::create(rewriter, loc, LLVM::ZeroOp::create(rewriter, loc, slotType), slot);
    temporaries.push_back(slot);
    Value kept = call(moir::halide::residentOrStagedFunctionName(),
                      ValueRange{exact, deviceInterface(), signature(memref), bytes, padded, slot},
                      d.ptr);
    Value ok = LLVM::ICmpOp::create(rewriter, loc, LLVM::ICmpPredicate::ne, kept, null());
    cf::AssertOp::create(rewriter, loc, ok,
                         ("Halide kernel " + callee + ": copying a kept buffer to the device failed")
                             .str());
    return kept;
  }
  /// After a Vulkan call: the buffers `resident` staged for it alone freed
  /// (a slot the table kept instead is still zero: nothing to free).
  void freeTemporaries(ArrayRef<Value> temporaries) {
    for (Value slot : temporaries)
      call(moir::halide::residentFreeFunctionName(), ValueRange{slot});
  }

  /// After a Vulkan call: the results' bytes copied back through their
  /// scratch memory (those `toHost` says; all without it), with `keep` their
  /// padded device buffers handed to the activation table (which fails the
  /// call where it is full), the crops released, the device buffers left
  /// and scratch memory freed.
  void unstage(ArrayRef<Staged> staged, size_t inputs, ArrayRef<bool> toHost = {},
               bool keep = false) {
    for (auto [r, s] : llvm::enumerate(llvm::drop_begin(staged, inputs))) {
      // The kernel wrote the crop: its bytes are the padded buffer's.
      setFlags(s.padded, kDeviceDirty);
      bool copy = toHost.empty() || toHost[r];
      if (copy) {
        runtime("halide_copy_to_host", {s.padded}, "copying a result to the host failed");
        LLVM::MemcpyOp::create(rewriter, loc, hostPointer(s.memref), s.scratch, s.bytes,
                               /*isVolatile=*/false);
      }
      if (keep)
        check(call(moir::halide::keepFunctionName(),
                   ValueRange{s.padded, s.exact, hostPointer(s.memref),
                              constant(d.i32, copy ? 1 : 0), constant(d.i32, 1)},
                   d.i32),
              "Halide kernel " + callee + ": keeping a result on the device failed: the table "
              "of activations kept there is full (" +
                  Twine(moir::halide::kActivationSlots) + " buffers on one thread)");
    }
    for (const Staged &s : staged) {
      setFlags(s.exact, 0);
      runtime("halide_device_release_crop", {s.exact}, "releasing a staged buffer's crop failed");
      setFlags(s.padded, 0);
      runtime("halide_device_free", {s.padded}, "freeing a staged buffer failed");
      call("halide_free", ValueRange{null(), s.scratch});
    }
  }
};

/// Whether a device call may keep `type` on the device (ResidentWeights.cpp:
/// 1 to 4 dimensions, static, and under 2 GB: the staged copy's padded
/// extent is an int32).
bool mayKeep(MemRefType type) {
  if (type.getRank() < 1 || type.getRank() > moir::halide::kResidentMaxRank ||
      !type.hasStaticShape())
    return false;
  int64_t bytes = type.getNumElements() * type.getElementTypeBitWidth() / 8;
  return bytes < (int64_t(1) << 31) - 64;
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

  /// A result's buffer type: a new allocation's, the identity layout (what
  /// bufferize makes). Without it, One-Shot Bufferize types a result with
  /// a fully dynamic layout where it needs the type before the op is
  /// bufferized: the scf.if that picks a decode or prefill kernel yielded
  /// memref<?x3072xf32, strided<[?, ?], offset: ?>>, so the MLIR kernels
  /// downstream saw unknown strides and fell back to plain loops (DeepSeek's
  /// MLA absorption on packed kv_b in a Halide build: 527 us a layer; 64
  /// with this; 143 in a build with MLIR's kernels only).
  FailureOr<BufferLikeType> getBufferType(Operation *, Value value, const BufferizationOptions &,
                                          const BufferizationState &,
                                          SmallVector<Value> &) const {
    auto tensor = cast<RankedTensorType>(value.getType());
    return cast<BufferLikeType>(MemRefType::get(tensor.getShape(), tensor.getElementType()));
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter, const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto call = cast<moir::HalideCallOp>(op);
    auto func = op->getParentOfType<func::FuncOp>();
    if (!func)
      return op->emitOpError("must be inside a function");
    Location loc = op->getLoc();
    auto device = call.getParams().getAs<StringAttr>("device");
    Emitter e{rewriter, loc, op, func, call.getCallee(), Descriptors(op->getContext()),
              device && device.getValue() != "host" ? device.getValue() : StringRef()};
    SmallVector<Value> buffers, args;
    llvm::SmallDenseSet<unsigned> copied; // inputs read through a fresh copy
    for (Value input : call.getInputs()) {
      FailureOr<Value> buffer = getBuffer(rewriter, input, options, state);
      if (failed(buffer))
        return failure();
      if (unitInnerStride(cast<MemRefType>(buffer->getType()))) {
        buffers.push_back(*buffer);
      } else {
        copied.insert(buffers.size());
        buffers.push_back(moir::host::copyToIdentityLayout(rewriter, loc, *buffer));
      }
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
    // Vulkan's buffers are staged (see the top of this file), so the
    // kernel's own descriptors never carry host data to copy.
    const bool staged = device && device.getValue() == "vulkan";
    // The weights a device call keeps there (resident): copied once. Not
    // one read through a fresh copy (a new address each call, which would
    // fill the table).
    llvm::SmallDenseSet<unsigned> kept;
    if (device && (device.getValue() == "vulkan" || device.getValue() == "opencl"))
      if (std::optional<ArrayRef<int64_t>> resident = call.getResident())
        for (int64_t i : *resident)
          if (!copied.contains(i) && mayKeep(cast<MemRefType>(buffers[i].getType())))
            kept.insert(static_cast<unsigned>(i));
    // moirc --target=halide (moir-halide-keep-activations): the results stay
    // on the device in the activation table, and the inputs another device
    // call left there are read there (KeepActivations.cpp).
    auto deviceInputs = op->getAttrOfType<DenseI64ArrayAttr>(moir::attrs::deviceInputsName());
    auto hostResults = op->getAttrOfType<DenseI64ArrayAttr>(moir::attrs::hostResultsName());
    const bool keepResults = op->hasAttr(moir::attrs::keepResultsName());
    if ((keepResults || deviceInputs) &&
        (!device || (device.getValue() != "opencl" && device.getValue() != "vulkan")))
      return op->emitOpError(
          "keeps its activations on the device, which only OpenCL and Vulkan calls do (moirc "
          "--target=halide --halide-target=opencl|vulkan)");
    llvm::SmallDenseSet<unsigned> onDevice;
    if (deviceInputs)
      for (int64_t i : deviceInputs.asArrayRef()) {
        if (i < 0 || i >= static_cast<int64_t>(buffers.size()) || copied.contains(i) ||
            kept.contains(i))
          return op->emitOpError() << "input " << i
                                   << " is marked on the device, but is not an input read "
                                      "in place (an operand with a unit inner stride)";
        onDevice.insert(static_cast<unsigned>(i));
      }
    SmallVector<Value> fresh; // the descriptors made for this call
    SmallVector<Value> temporaries; // Vulkan: kept buffers staged for this call
    for (auto [i, b] : llvm::enumerate(buffers)) {
      fresh.push_back(e.describe(b, /*input=*/!staged));
      // Bound to the kept device buffer where the table has it. On OpenCL
      // it may have none only after a result could not be kept (the table
      // full), which was then copied back: the call copies the host's
      // bytes (moir_hl_bind returns 0). On Vulkan a result is always kept
      // (moir_hl_keep fails the call where the table is full): bound to a
      // crop of it. Anything else fails the call, never reads stale bytes.
      if (onDevice.contains(i)) {
        Value bound = e.call(moir::halide::bindFunctionName(),
                             ValueRange{fresh.back(), e.constant(e.d.i32, staged)}, e.d.i32);
        cf::AssertOp::create(
            rewriter, loc,
            arith::CmpIOp::create(rewriter, loc,
                                  staged ? arith::CmpIPredicate::eq : arith::CmpIPredicate::sge,
                                  bound, e.constant(e.d.i32, staged ? 1 : 0)),
            ("Halide kernel " + call.getCallee() + ": input " + Twine(i) +
             " is not on the device (or cropping it failed)")
                .str());
      }
      args.push_back(kept.contains(i) ? e.resident(b, fresh.back(), temporaries) : fresh.back());
    }
    for (Value out : outs) {
      fresh.push_back(e.describe(out, /*input=*/false));
      args.push_back(fresh.back());
    }

    SmallVector<Staged> stagedBuffers;
    if (staged) {
      SmallVector<Value> memrefs(buffers);
      llvm::append_range(memrefs, outs);
      for (auto [i, m] : llvm::enumerate(memrefs))
        if (!kept.contains(i) && !onDevice.contains(i))
          stagedBuffers.push_back(e.stage(m, args[i], i < buffers.size()));
    }
    e.check(e.call(call.getCallee(), args, e.d.i32),
            "Halide kernel " + call.getCallee() + " failed");
    // Which results are copied back: all, or those a host op reads.
    SmallVector<bool> toHost;
    for (int64_t r = 0; r < static_cast<int64_t>(outs.size()); ++r)
      toHost.push_back(!keepResults ||
                       (hostResults && llvm::is_contained(hostResults.asArrayRef(), r)));
    if (staged) {
      e.unstage(stagedBuffers, buffers.size() - kept.size() - onDevice.size(), toHost,
                keepResults);
      for (unsigned i : onDevice)
        e.call(moir::halide::unbindFunctionName(), ValueRange{fresh[i], e.constant(e.d.i32, 1)});
      e.freeTemporaries(temporaries);
    } else if (device) {
      // A device kernel leaves its results on the device and every buffer
      // with a device allocation: copy the results back, free them all
      // (the descriptors die with this call). A resident input's fresh
      // descriptor has one only where the table had no room for it.
      // Results kept on the device are copied back only where a host op
      // reads them (or where the table is full: moir_hl_keep copies them).
      for (auto [r, desc] : llvm::enumerate(llvm::drop_begin(args, buffers.size()))) {
        if (toHost[r])
          e.runtime("halide_copy_to_host", {desc}, "copying a result to the host failed");
        if (keepResults)
          e.check(e.call(moir::halide::keepFunctionName(),
                         ValueRange{desc, e.null(), e.hostPointer(outs[r]),
                                    e.constant(e.d.i32, toHost[r] ? 1 : 0), e.constant(e.d.i32, 0)},
                         e.d.i32),
                  "Halide kernel " + call.getCallee() +
                      ": keeping a result on the device (or copying it back) failed");
      }
      for (unsigned i : onDevice)
        e.call(moir::halide::unbindFunctionName(), ValueRange{fresh[i], e.constant(e.d.i32, 0)});
      for (Value desc : fresh)
        e.call("halide_device_free", ValueRange{e.null(), desc}, e.d.i32);
    }
    replaceOpWithBufferizedValues(rewriter, op, outs);
    return success();
  }
};

/// moir.halide_sync_rows: the cache's buffer, unchanged on the host (its
/// result is that buffer), and a call of `moir_hl_sync_rows` on its
/// descriptor and the bytes of rows [offset, offset + rows), which asserts
/// that the copy succeeded (Halide has printed what failed).
struct HalideSyncRowsBufferization
    : BufferizableOpInterface::ExternalModel<HalideSyncRowsBufferization,
                                             moir::HalideSyncRowsOp> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &, const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &, const AnalysisState &) const {
    return false;
  }
  AliasingValueList getAliasingValues(Operation *op, OpOperand &, const AnalysisState &) const {
    return {{op->getResult(0), BufferRelation::Equivalent}};
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter, const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto sync = cast<moir::HalideSyncRowsOp>(op);
    auto func = op->getParentOfType<func::FuncOp>();
    if (!func)
      return op->emitOpError("must be inside a function");
    FailureOr<Value> buffer = getBuffer(rewriter, sync.getCache(), options, state);
    if (failed(buffer))
      return failure();
    auto type = cast<MemRefType>(buffer->getType());
    if (!type.getLayout().isIdentity() || !mayKeep(type))
      return op->emitOpError() << "the device keeps only static caches of 1 to "
                               << moir::halide::kResidentMaxRank
                               << " dimensions, with the identity layout, not " << type;
    Location loc = op->getLoc();
    Emitter e{rewriter, loc, op, func, "moir.halide_sync_rows", Descriptors(op->getContext()),
              sync.getDevice()};
    Value desc = e.describe(*buffer, /*input=*/true);
    int64_t rowBytes = type.getNumElements() / type.getDimSize(0) *
                       type.getElementTypeBitWidth() / 8;
    auto bytes = [&](Value rows) -> Value {
      Value i64 = arith::IndexCastOp::create(rewriter, loc, e.d.i64, rows);
      return arith::MulIOp::create(rewriter, loc, i64,
                                   arith::ConstantIntOp::create(rewriter, loc, rowBytes, 64));
    };
    Value end = arith::AddIOp::create(rewriter, loc, sync.getOffset(), sync.getRows());
    int64_t total = type.getNumElements() * type.getElementTypeBitWidth() / 8;
    // On Vulkan the kept copy is staged padded to 64 bytes, which is the
    // cache's own size: the op's verifier keeps Vulkan's caches at a
    // multiple of 64.
    int64_t padded = sync.getDevice() == "vulkan" ? total : 0;
    Value rc = e.call(moir::halide::syncRowsFunctionName(),
                      ValueRange{desc, e.deviceInterface(), e.signature(*buffer),
                                 bytes(sync.getOffset()), bytes(end), e.constant(e.d.i64, total),
                                 e.constant(e.d.i64, padded)},
                      e.d.i32);
    e.check(rc, "moir.halide_sync_rows: copying a KV cache's rows to the device failed");
    replaceOpWithBufferizedValues(rewriter, op, *buffer);
    return success();
  }
};

} // namespace

void moir::halide::registerHalideCallBufferization(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, moir::MoIRDialect *) {
    moir::HalideCallOp::attachInterface<HalideCallBufferization>(*ctx);
    moir::HalideSyncRowsOp::attachInterface<HalideSyncRowsBufferization>(*ctx);
    // The dialects whose ops bufferize creates (the descriptors and the
    // call), loaded with the interface as upstream's external models do:
    // a pass that bufferizes a module without them (moir-opt
    // --one-shot-bufferize) would otherwise build ops of unloaded dialects.
    ctx->loadDialect<arith::ArithDialect, cf::ControlFlowDialect, func::FuncDialect,
                     LLVM::LLVMDialect, memref::MemRefDialect>();
  });
}
