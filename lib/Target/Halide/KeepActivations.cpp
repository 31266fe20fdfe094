//===- KeepActivations.cpp - activations kept on the Halide device --------===//
//
// moirc --target=halide runs every op of a layer as a Halide kernel on the
// device (moir-halide-select-kernels, whole-layers). Each device call used
// to copy its inputs to the device and its results back: a layer's
// activations crossed twice per kernel. These two passes keep them there.
//
// moir-halide-keep-activations (tensors, before bufferization) finds the
// values that are on the device (a device call's results, their reshapes,
// and what scf.if, calls and returns pass on from them everywhere) and
// marks each device call: `moir.keep_results`, `moir.device_inputs` (the
// operands on the device) and `moir.host_results` (the results a host op
// reads, which are copied back too). HalideCallBufferization.cpp turns the
// marks into calls of the table below.
//
// moir-halide-activation-table (LLVM dialect) defines the table: per
// thread (a thread runs one forward at a time), 256 slots, each a kept
// result's host address and its descriptor (device buffer) with its
// dimensions; on Vulkan also the crop the kernel wrote the result through
// (moir_hl_keep says why). A slot is emptied, its device buffer freed, right before the
// host buffer is: every `free` in the module first calls
// `moir_hl_release_activation` with its pointer (a buffer's aligned start
// lies within 64 bytes of the allocation the bufferization made for it), so
// a later buffer at the same address is never taken for a freed one.
// Where the table is full a result is copied back as before (OpenCL; a
// Vulkan call fails), and the call that reads it finds no slot and copies
// the host's bytes.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/Halide/HalideTarget.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Parser/Parser.h"

namespace moir {
#define GEN_PASS_DEF_HALIDEKEEPACTIVATIONSPASS
#define GEN_PASS_DEF_HALIDEACTIVATIONTABLEPASS
#include "moir/Target/Halide/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

bool onDevice(moir::HalideCallOp call) {
  auto device = call.getParams().getAs<StringAttr>("device");
  return device && device.getValue() != "host";
}

/// Where the module's tensors live: `device` holds the values on the
/// device, `host` those of them some host op reads.
struct Placement {
  ModuleOp module;
  llvm::SetVector<Value> device;
  llvm::DenseSet<Value> host;
  llvm::DenseMap<Operation *, SmallVector<func::CallOp>> calls; // per private function
  llvm::DenseSet<Operation *> closed; // private functions only ever called

  explicit Placement(ModuleOp module) : module(module) {
    module.walk([&](func::CallOp call) {
      if (auto f = module.lookupSymbol<func::FuncOp>(call.getCallee()))
        calls[f].push_back(call);
    });
    for (func::FuncOp f : module.getOps<func::FuncOp>()) {
      if (!f.isPrivate() || f.isExternal() || !calls.count(f))
        continue;
      std::optional<SymbolTable::UseRange> uses = SymbolTable::getSymbolUses(f, module);
      if (uses && llvm::all_of(*uses, [](const SymbolTable::SymbolUse &use) {
            return isa<func::CallOp>(use.getUser());
          }))
        closed.insert(f);
    }
  }

  static SmallVector<func::ReturnOp> returns(func::FuncOp f) {
    SmallVector<func::ReturnOp> all;
    for (Block &block : f.getBody())
      if (auto ret = dyn_cast<func::ReturnOp>(block.getTerminator()))
        all.push_back(ret);
    return all;
  }
  func::FuncOp closedCallee(func::CallOp call) {
    auto f = module.lookupSymbol<func::FuncOp>(call.getCallee());
    return f && closed.contains(f) ? f : func::FuncOp();
  }
  bool onDeviceOnly(Value v) { return device.contains(v) && !host.contains(v); }

  /// One round of finding values on the device; whether it found any.
  bool spreadDevice() {
    size_t before = device.size();
    module.walk([&](Operation *op) {
      if (auto call = dyn_cast<moir::HalideCallOp>(op)) {
        if (onDevice(call))
          device.insert_range(call.getResults());
      } else if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(op)) {
        if (device.contains(op->getOperand(0)))
          device.insert(op->getResult(0));
      } else if (auto branch = dyn_cast<scf::IfOp>(op)) {
        if (branch.getElseRegion().empty())
          return;
        for (unsigned i = 0; i < branch.getNumResults(); ++i)
          if (device.contains(branch.thenYield().getOperand(i)) &&
              device.contains(branch.elseYield().getOperand(i)))
            device.insert(branch.getResult(i));
      } else if (auto call = dyn_cast<func::CallOp>(op)) {
        func::FuncOp f = closedCallee(call);
        if (!f)
          return;
        SmallVector<func::ReturnOp> rets = returns(f);
        for (unsigned i = 0; i < call.getNumResults(); ++i)
          if (!rets.empty() && llvm::all_of(rets, [&](func::ReturnOp r) {
                return device.contains(r.getOperand(i));
              }))
            device.insert(call.getResult(i));
      }
    });
    for (Operation *op : closed) {
      auto f = cast<func::FuncOp>(op);
      for (BlockArgument arg : f.getArguments())
        if (llvm::all_of(calls[f], [&](func::CallOp call) {
              return device.contains(call.getOperand(arg.getArgNumber()));
            }))
          device.insert(arg);
    }
    return device.size() != before;
  }

  /// Whether `use` of a value on the device needs its host bytes.
  bool readsHost(OpOperand &use) {
    Operation *owner = use.getOwner();
    unsigned i = use.getOperandNumber();
    if (auto call = dyn_cast<moir::HalideCallOp>(owner))
      return !onDevice(call);
    if (isa<tensor::DimOp>(owner))
      return false; // the shape only
    if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(owner))
      return !onDeviceOnly(owner->getResult(0));
    if (isa<scf::YieldOp>(owner)) {
      auto branch = dyn_cast<scf::IfOp>(owner->getParentOp());
      return !branch || !onDeviceOnly(branch.getResult(i));
    }
    if (auto ret = dyn_cast<func::ReturnOp>(owner)) {
      auto f = ret->getParentOfType<func::FuncOp>();
      if (!closed.contains(f))
        return true;
      return llvm::any_of(calls[f], [&](func::CallOp call) { return !onDeviceOnly(call.getResult(i)); });
    }
    if (auto call = dyn_cast<func::CallOp>(owner)) {
      func::FuncOp f = closedCallee(call);
      return !f || !onDeviceOnly(f.getArgument(i));
    }
    return true;
  }

  /// One round of finding values on the device that the host reads.
  bool spreadHost() {
    bool changed = false;
    for (Value v : device)
      if (!host.contains(v) &&
          llvm::any_of(v.getUses(), [&](OpOperand &use) { return readsHost(use); })) {
        host.insert(v);
        changed = true;
      }
    return changed;
  }
};

struct HalideKeepActivationsPass
    : moir::impl::HalideKeepActivationsPassBase<HalideKeepActivationsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<moir::HalideCallOp> calls;
    module.walk([&](moir::HalideCallOp call) {
      if (onDevice(call))
        calls.push_back(call);
    });
    if (calls.empty())
      return;
    Placement place(module);
    while (place.spreadDevice()) {
    }
    while (place.spreadHost()) {
    }
    Builder b(module.getContext());
    for (moir::HalideCallOp call : calls) {
      SmallVector<int64_t> inputs, hostResults;
      for (auto [i, v] : llvm::enumerate(call.getInputs()))
        if (place.device.contains(v))
          inputs.push_back(static_cast<int64_t>(i));
      for (auto [i, r] : llvm::enumerate(call.getResults()))
        if (place.host.contains(r))
          hostResults.push_back(static_cast<int64_t>(i));
      call->setAttr(moir::attrs::keepResultsName(), b.getUnitAttr());
      call->setAttr(moir::attrs::deviceInputsName(), b.getDenseI64ArrayAttr(inputs));
      call->setAttr(moir::attrs::hostResultsName(), b.getDenseI64ArrayAttr(hostResults));
    }
    // What a forward leaves in the table is freed when it returns.
    auto forward = module.lookupSymbol<func::FuncOp>("forward");
    if (!forward || forward.isExternal()) {
      module.emitError() << "moir-halide-keep-activations: no @forward to free the kept "
                            "activations at the end of";
      return signalPassFailure();
    }
    StringRef name = moir::halide::releaseActivationsFunctionName();
    auto release = module.lookupSymbol<func::FuncOp>(name);
    if (!release) {
      OpBuilder top(module.getBodyRegion());
      top.setInsertionPointToEnd(module.getBody());
      release = func::FuncOp::create(top, module.getLoc(), name, b.getFunctionType({}, {}));
      release.setPrivate();
    }
    for (func::ReturnOp ret : Placement::returns(forward)) {
      OpBuilder at(ret);
      func::CallOp::create(at, ret.getLoc(), release, ValueRange{});
    }
  }
};

// The table (HalideTarget.h names its functions). halide_buffer_t as in
// ResidentWeights.cpp; a slot is {host address, descriptor, its dimensions}.
constexpr llvm::StringLiteral kTable = R"mlir(
!buf = !llvm.struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>
!dims = !llvm.array<4 x struct<(i32, i32, i32, i32)>>
!slot = !llvm.struct<(ptr, !buf, !dims, !buf, !dims)>
!table = !llvm.array<@SLOTS@ x !slot>

llvm.func @halide_device_free(!llvm.ptr, !llvm.ptr) -> i32
llvm.func @halide_copy_to_host(!llvm.ptr, !llvm.ptr) -> i32
llvm.func @halide_device_crop(!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
llvm.func @halide_device_release_crop(!llvm.ptr, !llvm.ptr) -> i32

llvm.mlir.global internal thread_local @moir_hl_activation_slots() {addr_space = 0 : i32} : !table {
  %0 = llvm.mlir.zero : !table
  llvm.return %0 : !table
}
llvm.mlir.global internal thread_local @moir_hl_activation_used(0 : i64) {addr_space = 0 : i32} : i64
// Set when a result could not be kept (the table full on OpenCL: it was
// copied back instead), until the forward ends: only then may a call find
// no slot for an input on the device.
llvm.mlir.global internal thread_local @moir_hl_activation_overflow(0 : i32) {addr_space = 0 : i32} : i32

// Frees slot `s`'s device buffer (on Vulkan its crop released first) and
// empties it.
llvm.func internal @moir_hl_activation_empty(%s: !llvm.ptr) {
  %null = llvm.mlir.zero : !llvm.ptr
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %usedp = llvm.mlir.addressof @moir_hl_activation_used : !llvm.ptr
  %crop = llvm.getelementptr %s[0, 3] : (!llvm.ptr) -> !llvm.ptr, !slot
  %cropdevp = llvm.getelementptr %crop[0, 0] : (!llvm.ptr) -> !llvm.ptr, !buf
  %cropdev = llvm.load %cropdevp : !llvm.ptr -> i64
  %cropped = llvm.icmp "ne" %cropdev, %z : i64
  llvm.cond_br %cropped, ^release, ^free
^release:
  %rc0 = llvm.call @halide_device_release_crop(%null, %crop) : (!llvm.ptr, !llvm.ptr) -> i32
  llvm.br ^free
^free:
  %desc = llvm.getelementptr %s[0, 1] : (!llvm.ptr) -> !llvm.ptr, !slot
  %rc = llvm.call @halide_device_free(%null, %desc) : (!llvm.ptr, !llvm.ptr) -> i32
  llvm.store %null, %s : !llvm.ptr, !llvm.ptr
  %used = llvm.load %usedp : !llvm.ptr -> i64
  %left = llvm.sub %used, %one : i64
  llvm.store %left, %usedp : i64, !llvm.ptr
  llvm.return
}

// Sets a descriptor's device buffer, interface and flags.
llvm.func internal @moir_hl_activation_set_device(%desc: !llvm.ptr, %dev: i64, %iface: !llvm.ptr,
                                                  %flags: i64) {
  %devp = llvm.getelementptr %desc[0, 0] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %dev, %devp : i64, !llvm.ptr
  %ifacep = llvm.getelementptr %desc[0, 1] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %iface, %ifacep : !llvm.ptr, !llvm.ptr
  %flagsp = llvm.getelementptr %desc[0, 3] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %flags, %flagsp : i64, !llvm.ptr
  llvm.return
}

// Moves the device buffer of `src` (at most 4 dimensions) into the slot's
// descriptor `dst`, its dimensions copied to `dims`: `dst` has no host data
// (the device holds the bytes), `src` no device buffer left.
llvm.func internal @moir_hl_activation_take(%dst: !llvm.ptr, %dims: !llvm.ptr, %src: !llvm.ptr) {
  %z = llvm.mlir.constant(0 : i64) : i64
  %sixteen = llvm.mlir.constant(16 : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %value = llvm.load %src : !llvm.ptr -> !buf
  llvm.store %value, %dst : !buf, !llvm.ptr
  %srcdimsp = llvm.getelementptr %src[0, 8] : (!llvm.ptr) -> !llvm.ptr, !buf
  %srcdims = llvm.load %srcdimsp : !llvm.ptr -> !llvm.ptr
  %rankp = llvm.getelementptr %src[0, 7] : (!llvm.ptr) -> !llvm.ptr, !buf
  %rank = llvm.load %rankp : !llvm.ptr -> i32
  %rank64 = llvm.zext %rank : i32 to i64
  %dimbytes = llvm.mul %rank64, %sixteen : i64
  "llvm.intr.memcpy"(%dims, %srcdims, %dimbytes) <{isVolatile = false}> : (!llvm.ptr, !llvm.ptr, i64) -> ()
  %dstdimsp = llvm.getelementptr %dst[0, 8] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %dims, %dstdimsp : !llvm.ptr, !llvm.ptr
  %dsthostp = llvm.getelementptr %dst[0, 2] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %null, %dsthostp : !llvm.ptr, !llvm.ptr
  %dstflagsp = llvm.getelementptr %dst[0, 3] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %z, %dstflagsp : i64, !llvm.ptr
  llvm.call @moir_hl_activation_set_device(%src, %z, %null, %z) : (!llvm.ptr, i64, !llvm.ptr, i64) -> ()
  llvm.return
}

// A call's result kept on the device: `desc`, the descriptor that owns its
// device buffer, copied with its dimensions into a slot keyed by `key`, the
// host address of the result's buffer; `desc`'s own device fields cleared
// (the slot owns the buffer). On Vulkan (`staged`) `desc` is the padded
// byte buffer and `crop` the result's descriptor, a crop of it, which the
// slot keeps too: Halide 21's Vulkan allocator makes a region available
// again when its last crop is released (its usage count back at 0), even
// while the buffer is held, so one crop stays until the slot is emptied. A
// staged buffer's host scratch is not kept. Where no slot is free: on
// Vulkan -1, which the call asserts on; else the result copied back unless
// `copied` says it was, and Halide's code.
llvm.func internal @moir_hl_keep(%desc: !llvm.ptr, %crop: !llvm.ptr, %key: !llvm.ptr,
                                 %copied: i32, %staged: i32) -> i32 {
  %i0 = llvm.mlir.constant(0 : i32) : i32
  %m1 = llvm.mlir.constant(-1 : i32) : i32
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %none = llvm.mlir.constant(-1 : i64) : i64
  %slots_n = llvm.mlir.constant(@SLOTS@ : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_activation_slots : !llvm.ptr
  %usedp = llvm.mlir.addressof @moir_hl_activation_used : !llvm.ptr
  %rankp = llvm.getelementptr %desc[0, 7] : (!llvm.ptr) -> !llvm.ptr, !buf
  %rank = llvm.load %rankp : !llvm.ptr -> i32
  %i4 = llvm.mlir.constant(4 : i32) : i32
  %fits = llvm.icmp "ule" %rank, %i4 : i32
  llvm.cond_br %fits, ^search(%z, %none : i64, i64), ^full
^search(%i: i64, %free: i64):
  %more = llvm.icmp "ult" %i, %slots_n : i64
  llvm.cond_br %more, ^probe, ^chosen
^probe:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %k = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %next = llvm.add %i, %one : i64
  %same = llvm.icmp "eq" %k, %key : !llvm.ptr
  llvm.cond_br %same, ^stale(%slot : !llvm.ptr), ^unused
^stale(%old: !llvm.ptr):
  // A slot of this address (its buffer freed without the release: none
  // is, but a stale slot must not stand for this buffer): emptied.
  llvm.call @moir_hl_activation_empty(%old) : (!llvm.ptr) -> ()
  llvm.br ^unused
^unused:
  %k2 = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %empty = llvm.icmp "eq" %k2, %null : !llvm.ptr
  %nofree = llvm.icmp "eq" %free, %none : i64
  %take = llvm.and %empty, %nofree : i1
  %free2 = llvm.select %take, %i, %free : i1, i64
  llvm.br ^search(%next, %free2 : i64, i64)
^chosen:
  %found = llvm.icmp "ne" %free, %none : i64
  llvm.cond_br %found, ^fill, ^full
^fill:
  %new = llvm.getelementptr %slots[0, %free] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %kept = llvm.getelementptr %new[0, 1] : (!llvm.ptr) -> !llvm.ptr, !slot
  %dims = llvm.getelementptr %new[0, 2] : (!llvm.ptr) -> !llvm.ptr, !slot
  llvm.call @moir_hl_activation_take(%kept, %dims, %desc) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> ()
  %keptcrop = llvm.getelementptr %new[0, 3] : (!llvm.ptr) -> !llvm.ptr, !slot
  %hascrop = llvm.icmp "ne" %crop, %null : !llvm.ptr
  llvm.cond_br %hascrop, ^keepcrop, ^nocrop
^keepcrop:
  %cropdims = llvm.getelementptr %new[0, 4] : (!llvm.ptr) -> !llvm.ptr, !slot
  llvm.call @moir_hl_activation_take(%keptcrop, %cropdims, %crop) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> ()
  llvm.br ^keyed
^nocrop:
  %zerobuf = llvm.mlir.zero : !buf
  llvm.store %zerobuf, %keptcrop : !buf, !llvm.ptr
  llvm.br ^keyed
^keyed:
  llvm.store %key, %new : !llvm.ptr, !llvm.ptr
  %used = llvm.load %usedp : !llvm.ptr -> i64
  %used2 = llvm.add %used, %one : i64
  llvm.store %used2, %usedp : i64, !llvm.ptr
  llvm.return %i0 : i32
^full:
  %isstaged = llvm.icmp "ne" %staged, %i0 : i32
  llvm.cond_br %isstaged, ^refuse, ^fallback
^refuse:
  llvm.return %m1 : i32
^fallback:
  %overflowp = llvm.mlir.addressof @moir_hl_activation_overflow : !llvm.ptr
  %i1 = llvm.mlir.constant(1 : i32) : i32
  llvm.store %i1, %overflowp : i32, !llvm.ptr
  %already = llvm.icmp "ne" %copied, %i0 : i32
  llvm.cond_br %already, ^done, ^copy
^copy:
  %rc = llvm.call @halide_copy_to_host(%null, %desc) : (!llvm.ptr, !llvm.ptr) -> i32
  llvm.return %rc : i32
^done:
  llvm.return %i0 : i32
}

// An input on the device: `desc` (made for its host buffer, with no device
// buffer) given the device buffer kept for its host address, which is
// current (the host bytes are not). On OpenCL the kept buffer itself; on
// Vulkan (`staged`) a crop of the kept padded byte buffer at offset 0, seen
// with `desc`'s dimensionality. Returns 1 if bound; 0 if no slot holds it
// because a result could not be kept this forward (OpenCL: it was copied
// back, and the call copies the host's bytes); -1 if no slot holds it
// otherwise (its host bytes are not current: the call fails); or Halide's
// error code from the crop.
llvm.func internal @moir_hl_bind(%desc: !llvm.ptr, %staged: i32) -> i32 {
  %i0 = llvm.mlir.constant(0 : i32) : i32
  %i1 = llvm.mlir.constant(1 : i32) : i32
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %dirty = llvm.mlir.constant(2 : i64) : i64
  %slots_n = llvm.mlir.constant(@SLOTS@ : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_activation_slots : !llvm.ptr
  %usedp = llvm.mlir.addressof @moir_hl_activation_used : !llvm.ptr
  %used = llvm.load %usedp : !llvm.ptr -> i64
  %any = llvm.icmp "ne" %used, %z : i64
  %hostp = llvm.getelementptr %desc[0, 2] : (!llvm.ptr) -> !llvm.ptr, !buf
  %host = llvm.load %hostp : !llvm.ptr -> !llvm.ptr
  // A padded view of the kept buffer for the crop, on this stack.
  %c1 = llvm.mlir.constant(1 : i64) : i64
  %view = llvm.alloca %c1 x !buf {alignment = 8 : i64} : (i64) -> !llvm.ptr
  %viewdims = llvm.alloca %c1 x !dims {alignment = 8 : i64} : (i64) -> !llvm.ptr
  llvm.cond_br %any, ^search(%z : i64), ^miss
^search(%i: i64):
  %more = llvm.icmp "ult" %i, %slots_n : i64
  llvm.cond_br %more, ^probe, ^miss
^probe:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %key = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %same = llvm.icmp "eq" %key, %host : !llvm.ptr
  %next = llvm.add %i, %one : i64
  llvm.cond_br %same, ^found, ^search(%next : i64)
^found:
  %kdevp = llvm.getelementptr %slot[0, 1, 0] : (!llvm.ptr) -> !llvm.ptr, !slot
  %kdev = llvm.load %kdevp : !llvm.ptr -> i64
  %kifacep = llvm.getelementptr %slot[0, 1, 1] : (!llvm.ptr) -> !llvm.ptr, !slot
  %kiface = llvm.load %kifacep : !llvm.ptr -> !llvm.ptr
  %isstaged = llvm.icmp "ne" %staged, %i0 : i32
  llvm.cond_br %isstaged, ^crop, ^bind
^bind:
  llvm.call @moir_hl_activation_set_device(%desc, %kdev, %kiface, %dirty) : (!llvm.ptr, i64, !llvm.ptr, i64) -> ()
  llvm.return %i1 : i32
^crop:
  // The view: the kept buffer's device fields, uint8, desc's rank, the
  // first dimension spanning the padded bytes (the kept descriptor's).
  %kdimsp = llvm.getelementptr %slot[0, 1, 8] : (!llvm.ptr) -> !llvm.ptr, !slot
  %kdims = llvm.load %kdimsp : !llvm.ptr -> !llvm.ptr
  %kextp = llvm.getelementptr %kdims[0, 1] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  %padded = llvm.load %kextp : !llvm.ptr -> i32
  %rankp = llvm.getelementptr %desc[0, 7] : (!llvm.ptr) -> !llvm.ptr, !buf
  %rank = llvm.load %rankp : !llvm.ptr -> i32
  @VIEWBUF@
  %d0 = llvm.mlir.constant(0 : i32) : i32
  %d1 = llvm.mlir.constant(1 : i32) : i32
  @VIEWDIMS@
  %rc = llvm.call @halide_device_crop(%null, %view, %desc) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
  %ok = llvm.icmp "eq" %rc, %i0 : i32
  %bound = llvm.select %ok, %i1, %rc : i1, i32
  llvm.return %bound : i32
^miss:
  %overflowp = llvm.mlir.addressof @moir_hl_activation_overflow : !llvm.ptr
  %overflow = llvm.load %overflowp : !llvm.ptr -> i32
  %overflowed = llvm.icmp "ne" %overflow, %i0 : i32
  %m1 = llvm.mlir.constant(-1 : i32) : i32
  %missed = llvm.select %overflowed, %i0, %m1 : i1, i32
  llvm.return %missed : i32
}

// After the call: `desc` let go of a kept device buffer it was bound to
// (on Vulkan, `staged`, its crop released; on OpenCL a device buffer of its
// own, the host's bytes copied for this call, stays to be freed).
llvm.func internal @moir_hl_unbind(%desc: !llvm.ptr, %staged: i32) {
  %i0 = llvm.mlir.constant(0 : i32) : i32
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %slots_n = llvm.mlir.constant(@SLOTS@ : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_activation_slots : !llvm.ptr
  %devp = llvm.getelementptr %desc[0, 0] : (!llvm.ptr) -> !llvm.ptr, !buf
  %dev = llvm.load %devp : !llvm.ptr -> i64
  %has = llvm.icmp "ne" %dev, %z : i64
  %isstaged = llvm.icmp "ne" %staged, %i0 : i32
  llvm.cond_br %has, ^which, ^end
^which:
  llvm.cond_br %isstaged, ^release, ^search(%z : i64)
^release:
  %rc = llvm.call @halide_device_release_crop(%null, %desc) : (!llvm.ptr, !llvm.ptr) -> i32
  llvm.br ^end
^search(%i: i64):
  %more = llvm.icmp "ult" %i, %slots_n : i64
  llvm.cond_br %more, ^probe, ^end
^probe:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %key = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %kdevp = llvm.getelementptr %slot[0, 1, 0] : (!llvm.ptr) -> !llvm.ptr, !slot
  %kdev = llvm.load %kdevp : !llvm.ptr -> i64
  %live = llvm.icmp "ne" %key, %null : !llvm.ptr
  %same = llvm.icmp "eq" %kdev, %dev : i64
  %mine = llvm.and %live, %same : i1
  %next = llvm.add %i, %one : i64
  llvm.cond_br %mine, ^let, ^search(%next : i64)
^let:
  llvm.call @moir_hl_activation_set_device(%desc, %z, %null, %z) : (!llvm.ptr, i64, !llvm.ptr, i64) -> ()
  llvm.br ^end
^end:
  llvm.return
}

// Before `free(p)`: the slots of a buffer allocated at `p` (its aligned
// start within 64 bytes of it) emptied. Nothing to do when none is used.
llvm.func internal @moir_hl_release_activation(%p: !llvm.ptr) {
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %sixtyfour = llvm.mlir.constant(64 : i64) : i64
  %slots_n = llvm.mlir.constant(@SLOTS@ : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_activation_slots : !llvm.ptr
  %usedp = llvm.mlir.addressof @moir_hl_activation_used : !llvm.ptr
  %used = llvm.load %usedp : !llvm.ptr -> i64
  %any = llvm.icmp "ne" %used, %z : i64
  %base = llvm.ptrtoint %p : !llvm.ptr to i64
  llvm.cond_br %any, ^search(%z : i64), ^end
^search(%i: i64):
  %more = llvm.icmp "ult" %i, %slots_n : i64
  llvm.cond_br %more, ^probe, ^end
^probe:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %key = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %live = llvm.icmp "ne" %key, %null : !llvm.ptr
  %at = llvm.ptrtoint %key : !llvm.ptr to i64
  %off = llvm.sub %at, %base : i64
  %within = llvm.icmp "ult" %off, %sixtyfour : i64
  %mine = llvm.and %live, %within : i1
  %next = llvm.add %i, %one : i64
  llvm.cond_br %mine, ^empty, ^search(%next : i64)
^empty:
  llvm.call @moir_hl_activation_empty(%slot) : (!llvm.ptr) -> ()
  llvm.br ^search(%next : i64)
^end:
  llvm.return
}

// At the end of a forward: every slot left emptied, the overflow forgotten.
llvm.func internal @moir_hl_release_activations() {
  %z = llvm.mlir.constant(0 : i64) : i64
  %zero32 = llvm.mlir.constant(0 : i32) : i32
  %overflowp = llvm.mlir.addressof @moir_hl_activation_overflow : !llvm.ptr
  llvm.store %zero32, %overflowp : i32, !llvm.ptr
  %one = llvm.mlir.constant(1 : i64) : i64
  %slots_n = llvm.mlir.constant(@SLOTS@ : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_activation_slots : !llvm.ptr
  llvm.br ^search(%z : i64)
^search(%i: i64):
  %more = llvm.icmp "ult" %i, %slots_n : i64
  llvm.cond_br %more, ^probe, ^end
^probe:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %key = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %live = llvm.icmp "ne" %key, %null : !llvm.ptr
  %next = llvm.add %i, %one : i64
  llvm.cond_br %live, ^empty, ^search(%next : i64)
^empty:
  llvm.call @moir_hl_activation_empty(%slot) : (!llvm.ptr) -> ()
  llvm.br ^search(%next : i64)
^end:
  llvm.return
}
)mlir";

struct HalideActivationTablePass
    : moir::impl::HalideActivationTablePassBase<HalideActivationTablePass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto keep = module.lookupSymbol<LLVM::LLVMFuncOp>(moir::halide::keepFunctionName());
    if (!keep || !keep.isExternal())
      return;
    if (module.lookupSymbol("moir_hl_activation_slots")) {
      module.emitError() << "moir-halide-activation-table: the module already has the table";
      return signalPassFailure();
    }
    std::string text = kTable.str();
    for (size_t at; (at = text.find("@SLOTS@")) != std::string::npos;)
      text.replace(at, 7, std::to_string(moir::halide::kActivationSlots));
    // The padded view's four dimensions in moir_hl_bind.
    text.replace(text.find("@VIEWDIMS@"), 10,
                 moir::halide::paddedDimStores("%viewdims", "%padded", "vd"));
    text.replace(text.find("@VIEWBUF@"), 9,
                 moir::halide::byteBufferStores(
                     "%view", "v", {"%kdev", "%kiface", "%null", "%z", "%rank", "%viewdims"}));
    OwningOpRef<ModuleOp> table = parseSourceString<ModuleOp>(text, ParserConfig(&getContext()));
    if (!table) {
      module.emitError() << "moir-halide-activation-table: the table's IR does not parse";
      return signalPassFailure();
    }
    // Every free of the module first releases the slots of its buffer
    // (before the table's own functions join the module).
    StringRef release = moir::halide::releaseActivationFunctionName();
    SmallVector<LLVM::CallOp> frees;
    module.walk([&](LLVM::CallOp call) {
      if (call.getCallee() == "free" && call.getNumOperands() == 1)
        frees.push_back(call);
    });
    SymbolTable symbols(module);
    for (Operation &op : llvm::make_early_inc_range(table->getBody()->getOperations())) {
      if (auto symbol = dyn_cast<SymbolOpInterface>(op)) {
        if (Operation *existing = symbols.lookup(symbol.getName())) {
          auto func = dyn_cast<LLVM::LLVMFuncOp>(existing);
          if (!func || !func.isExternal()) {
            existing->emitError() << "moir-halide-activation-table: '" << symbol.getName()
                                  << "' is already defined";
            return signalPassFailure();
          }
          if (cast<LLVM::LLVMFuncOp>(op).isExternal())
            continue; // a runtime function declared already
          symbols.erase(existing);
        }
      }
      op.remove();
      symbols.insert(&op);
    }
    auto releaseFn = module.lookupSymbol<LLVM::LLVMFuncOp>(release);
    for (LLVM::CallOp call : frees) {
      OpBuilder at(call);
      LLVM::CallOp::create(at, call.getLoc(), releaseFn, call.getOperands());
    }
  }
};

} // namespace
