//===- ResidentWeights.cpp - the moir-halide-resident-weights pass --------===//
//
// A device kernel's weights stay on the device between calls. The
// bufferization of a device moir.halide_call (HalideCallBufferization.cpp)
// hands each weight's descriptor to `moir_hl_resident`; this pass, run once
// the module is in the LLVM dialect, defines it:
//
//   - a table of slots, one per weight buffer on the device: its host
//     address and type signature (the key), the descriptor the kernels get,
//     and on Vulkan the padded buffer that descriptor is a crop of, each
//     with its dimensions;
//   - `moir_hl_resident(desc, interface, signature, bytes, padded)`: under a
//     spin lock, finds the slot of (desc->host, signature), or fills the
//     next one: `desc` and its dimensions copied in, the bytes copied to
//     the device (padded > 0: staged through `padded` bytes of host memory
//     and cropped, as Vulkan's per-call buffers are); returns the slot's
//     descriptor, or null when the table is full or a copy failed;
//   - `moir_hl_resident_or_staged(..., slot)` (Vulkan's calls): the same,
//     or where the table has no room, the caller's `slot` staged for one
//     call (freed after it with `moir_hl_resident_free`);
//   - `moir_hl_sync_rows(desc, interface, signature, begin, end, total,
//     padded)` (moir.halide_sync_rows): the same slot for a KV cache, then
//     its bytes [begin, end), rounded out to 4 KB, copied from the host
//     through a crop of the device buffer: the rows the forward wrote;
//   - `moir_hl_forget(host)`, exported: the runtime calls it before it
//     frees a session's cache; the slots of that address are freed on the
//     device and emptied, for later buffers to fill;
//   - `moir_hl_resident_release`, a destructor that frees the device
//     buffers when the artifact is unloaded.
//
// The table is written here as MLIR's LLVM dialect in text, which reads as
// the C it stands for; its capacity is four slots per buffer @forward takes
// (the weights and each live session's caches). When it is full the calls
// copy their inputs as any other (HalideCallBufferization.cpp).
//
//===----------------------------------------------------------------------===//

#include "moir/Target/Halide/HalideTarget.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Parser/Parser.h"

namespace moir {
#define GEN_PASS_DEF_HALIDERESIDENTWEIGHTSPASS
#include "moir/Target/Halide/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

// halide_buffer_t (Halide 21's HalideRuntime.h): {device, device_interface,
// host, flags, {code, bits, lanes}, dimensions, dim, padding}. A slot:
// {key host, key signature, descriptor, padded descriptor, their dims}.
constexpr llvm::StringLiteral kTable = R"mlir(
!buf = !llvm.struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>
!dims = !llvm.array<4 x struct<(i32, i32, i32, i32)>>
!slot = !llvm.struct<(ptr, i64, !buf, !buf, !dims, !dims)>
!table = !llvm.array<@CAPACITY@ x !slot>

llvm.func @halide_copy_to_device(!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
llvm.func @halide_device_crop(!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
llvm.func @halide_device_release_crop(!llvm.ptr, !llvm.ptr) -> i32
llvm.func @halide_device_free(!llvm.ptr, !llvm.ptr) -> i32
llvm.func @halide_malloc(!llvm.ptr, i64) -> !llvm.ptr
llvm.func @halide_free(!llvm.ptr, !llvm.ptr)

llvm.mlir.global internal @moir_hl_resident_slots() {addr_space = 0 : i32} : !table {
  %0 = llvm.mlir.zero : !table
  llvm.return %0 : !table
}
llvm.mlir.global internal @moir_hl_resident_count(0 : i64) {addr_space = 0 : i32} : i64
llvm.mlir.global internal @moir_hl_resident_lock(0 : i32) {addr_space = 0 : i32} : i32

llvm.func internal @moir_hl_resident(%desc: !llvm.ptr, %iface: !llvm.ptr, %sig: i64,
                                     %bytes: i64, %padded: i64) -> !llvm.ptr {
  %i0 = llvm.mlir.constant(0 : i32) : i32
  %i1 = llvm.mlir.constant(1 : i32) : i32
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %capacity = llvm.mlir.constant(@CAPACITY@ : i64) : i64
  %true = llvm.mlir.constant(true) : i1
  %null = llvm.mlir.zero : !llvm.ptr
  %lock = llvm.mlir.addressof @moir_hl_resident_lock : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_resident_slots : !llvm.ptr
  %countp = llvm.mlir.addressof @moir_hl_resident_count : !llvm.ptr
  %hostp = llvm.getelementptr %desc[0, 2] : (!llvm.ptr) -> !llvm.ptr, !buf
  %host = llvm.load %hostp : !llvm.ptr -> !llvm.ptr
  llvm.br ^acquire
^acquire:
  %x = llvm.cmpxchg %lock, %i0, %i1 acquire monotonic : !llvm.ptr, i32
  %got = llvm.extractvalue %x[1] : !llvm.struct<(i32, i1)>
  llvm.cond_br %got, ^locked, ^acquire
^locked:
  %count = llvm.load %countp : !llvm.ptr -> i64
  %none = llvm.mlir.constant(-1 : i64) : i64
  llvm.br ^search(%z, %none : i64, i64)
^search(%i: i64, %free: i64):
  %more = llvm.icmp "ult" %i, %count : i64
  llvm.cond_br %more, ^probe, ^insert
^probe:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %key = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %keysigp = llvm.getelementptr %slot[0, 1] : (!llvm.ptr) -> !llvm.ptr, !slot
  %keysig = llvm.load %keysigp : !llvm.ptr -> i64
  %samehost = llvm.icmp "eq" %key, %host : !llvm.ptr
  %samesig = llvm.icmp "eq" %keysig, %sig : i64
  %hit = llvm.and %samehost, %samesig : i1
  %next = llvm.add %i, %one : i64
  // The first slot moir_hl_forget emptied (key null), to fill before
  // growing the table.
  %empty = llvm.icmp "eq" %key, %null : !llvm.ptr
  %nofree = llvm.icmp "eq" %free, %none : i64
  %take = llvm.and %empty, %nofree : i1
  %free1 = llvm.select %take, %i, %free : i1, i64
  llvm.cond_br %hit, ^found(%slot : !llvm.ptr), ^search(%next, %free1 : i64, i64)
^found(%s: !llvm.ptr):
  llvm.store %i0, %lock atomic release {alignment = 4 : i64} : i32, !llvm.ptr
  %kept = llvm.getelementptr %s[0, 2] : (!llvm.ptr) -> !llvm.ptr, !slot
  llvm.return %kept : !llvm.ptr
^insert:
  %reuse = llvm.icmp "ne" %free, %none : i64
  %full = llvm.icmp "uge" %count, %capacity : i64
  %grow = llvm.xor %reuse, %true : i1
  %nowhere = llvm.and %full, %grow : i1
  %at = llvm.select %reuse, %free, %count : i1, i64
  %count2 = llvm.add %count, %one : i64
  %newcount = llvm.select %reuse, %count, %count2 : i1, i64
  llvm.cond_br %nowhere, ^fail, ^fill
^fill:
  %new = llvm.getelementptr %slots[0, %at] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %exact = llvm.getelementptr %new[0, 2] : (!llvm.ptr) -> !llvm.ptr, !slot
  %filled = llvm.call @moir_hl_fill(%new, %desc, %iface, %bytes, %padded) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64) -> i32
  %ok = llvm.icmp "eq" %filled, %i0 : i32
  llvm.cond_br %ok, ^commit, ^unfill
^unfill:
  // What the failed copy allocated is freed; the slot stays empty.
  llvm.call @moir_hl_resident_free(%new) : (!llvm.ptr) -> ()
  llvm.br ^fail
^commit:
  llvm.store %host, %new : !llvm.ptr, !llvm.ptr
  %newsig = llvm.getelementptr %new[0, 1] : (!llvm.ptr) -> !llvm.ptr, !slot
  llvm.store %sig, %newsig : i64, !llvm.ptr
  llvm.store %newcount, %countp : i64, !llvm.ptr
  llvm.store %i0, %lock atomic release {alignment = 4 : i64} : i32, !llvm.ptr
  llvm.return %exact : !llvm.ptr
^fail:
  llvm.store %i0, %lock atomic release {alignment = 4 : i64} : i32, !llvm.ptr
  llvm.return %null : !llvm.ptr
}

// Fills `new` (a slot, zeroed or emptied) for the buffer of `desc`: its
// descriptor and dimensions copied in and its bytes copied to the device
// (padded > 0: staged through `padded` bytes of host memory and cropped).
// Returns Halide's error code (-1: no host memory to stage); on failure
// moir_hl_resident_free(new) frees what was allocated.
llvm.func internal @moir_hl_fill(%new: !llvm.ptr, %desc: !llvm.ptr, %iface: !llvm.ptr,
                                 %bytes: i64, %padded: i64) -> i32 {
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %hostp = llvm.getelementptr %desc[0, 2] : (!llvm.ptr) -> !llvm.ptr, !buf
  %host = llvm.load %hostp : !llvm.ptr -> !llvm.ptr
  %exact = llvm.getelementptr %new[0, 2] : (!llvm.ptr) -> !llvm.ptr, !slot
  %bufend = llvm.getelementptr %null[1] : (!llvm.ptr) -> !llvm.ptr, !buf
  %bufbytes = llvm.ptrtoint %bufend : !llvm.ptr to i64
  "llvm.intr.memcpy"(%exact, %desc, %bufbytes) <{isVolatile = false}> : (!llvm.ptr, !llvm.ptr, i64) -> ()
  %rankp = llvm.getelementptr %desc[0, 7] : (!llvm.ptr) -> !llvm.ptr, !buf
  %rank = llvm.load %rankp : !llvm.ptr -> i32
  %rank64 = llvm.zext %rank : i32 to i64
  %dimsize = llvm.mlir.constant(16 : i64) : i64
  %dimbytes = llvm.mul %rank64, %dimsize : i64
  %dimsp = llvm.getelementptr %desc[0, 8] : (!llvm.ptr) -> !llvm.ptr, !buf
  %dims = llvm.load %dimsp : !llvm.ptr -> !llvm.ptr
  %keptdims = llvm.getelementptr %new[0, 4] : (!llvm.ptr) -> !llvm.ptr, !slot
  "llvm.intr.memcpy"(%keptdims, %dims, %dimbytes) <{isVolatile = false}> : (!llvm.ptr, !llvm.ptr, i64) -> ()
  %exactdimsp = llvm.getelementptr %exact[0, 8] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %keptdims, %exactdimsp : !llvm.ptr, !llvm.ptr
  %staged = llvm.icmp "ne" %padded, %z : i64
  llvm.cond_br %staged, ^stage, ^copy
^copy:
  %rc = llvm.call @halide_copy_to_device(%null, %exact, %iface) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
  llvm.return %rc : i32
^stage:
  %scratch = llvm.call @halide_malloc(%null, %padded) : (!llvm.ptr, i64) -> !llvm.ptr
  %nomem = llvm.icmp "eq" %scratch, %null : !llvm.ptr
  %minus1 = llvm.mlir.constant(-1 : i32) : i32
  llvm.cond_br %nomem, ^nomem, ^staging
^nomem:
  llvm.return %minus1 : i32
^staging:
  "llvm.intr.memcpy"(%scratch, %host, %bytes) <{isVolatile = false}> : (!llvm.ptr, !llvm.ptr, i64) -> ()
  // The padded buffer: uint8, as many dimensions as the weight's (a crop
  // keeps the dimensionality), the first spanning the bytes.
  %pad = llvm.getelementptr %new[0, 3] : (!llvm.ptr) -> !llvm.ptr, !slot
  %paddims = llvm.getelementptr %new[0, 5] : (!llvm.ptr) -> !llvm.ptr, !slot
  @PADBUF@
  // dim 0 = {0, padded, 1, 0}; dims 1-3 = {0, 1, padded, 0}
  %p32 = llvm.trunc %padded : i64 to i32
  %d0 = llvm.mlir.constant(0 : i32) : i32
  %d1 = llvm.mlir.constant(1 : i32) : i32
  @DIMS@
  %rc1 = llvm.call @halide_copy_to_device(%null, %pad, %iface) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
  %rc2 = llvm.call @halide_device_crop(%null, %pad, %exact) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
  llvm.call @halide_free(%null, %scratch) : (!llvm.ptr, !llvm.ptr) -> ()
  // The host copy is gone: the padded buffer lives on the device only.
  llvm.store %null, %p2 : !llvm.ptr, !llvm.ptr
  llvm.store %z, %p3 : i64, !llvm.ptr
  %exactflags = llvm.getelementptr %exact[0, 3] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %z, %exactflags : i64, !llvm.ptr
  %rcs = llvm.or %rc1, %rc2 : i32
  llvm.return %rcs : i32
}

// moir_hl_resident, or where the table has no room, `tmp` (a zeroed slot
// of the caller's) filled for this call alone: Vulkan's calls stage a kept
// buffer this way, and the caller frees `tmp` with moir_hl_resident_free
// after the kernel ran (nothing to free when the table kept it). Null only
// when a copy failed.
llvm.func internal @moir_hl_resident_or_staged(%desc: !llvm.ptr, %iface: !llvm.ptr, %sig: i64,
                                               %bytes: i64, %padded: i64,
                                               %tmp: !llvm.ptr) -> !llvm.ptr {
  %i0 = llvm.mlir.constant(0 : i32) : i32
  %null = llvm.mlir.zero : !llvm.ptr
  %kept = llvm.call @moir_hl_resident(%desc, %iface, %sig, %bytes, %padded) : (!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr
  %found = llvm.icmp "ne" %kept, %null : !llvm.ptr
  llvm.cond_br %found, ^kept, ^stage
^kept:
  llvm.return %kept : !llvm.ptr
^stage:
  %rc = llvm.call @moir_hl_fill(%tmp, %desc, %iface, %bytes, %padded) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64) -> i32
  %ok = llvm.icmp "eq" %rc, %i0 : i32
  llvm.cond_br %ok, ^staged, ^failed
^staged:
  %exact = llvm.getelementptr %tmp[0, 2] : (!llvm.ptr) -> !llvm.ptr, !slot
  llvm.return %exact : !llvm.ptr
^failed:
  llvm.call @moir_hl_resident_free(%tmp) : (!llvm.ptr) -> ()
  llvm.return %null : !llvm.ptr
}

// Frees the device buffers of `slot` and empties it (key null).
llvm.func internal @moir_hl_resident_free(%slot: !llvm.ptr) {
  %z = llvm.mlir.constant(0 : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %exact = llvm.getelementptr %slot[0, 2] : (!llvm.ptr) -> !llvm.ptr, !slot
  %pad = llvm.getelementptr %slot[0, 3] : (!llvm.ptr) -> !llvm.ptr, !slot
  %paddevp = llvm.getelementptr %pad[0, 0] : (!llvm.ptr) -> !llvm.ptr, !buf
  %paddev = llvm.load %paddevp : !llvm.ptr -> i64
  %staged = llvm.icmp "ne" %paddev, %z : i64
  llvm.cond_br %staged, ^crop, ^plain
^crop:
  %rc1 = llvm.call @halide_device_release_crop(%null, %exact) : (!llvm.ptr, !llvm.ptr) -> i32
  %rc2 = llvm.call @halide_device_free(%null, %pad) : (!llvm.ptr, !llvm.ptr) -> i32
  llvm.br ^empty
^plain:
  %rc3 = llvm.call @halide_device_free(%null, %exact) : (!llvm.ptr, !llvm.ptr) -> i32
  llvm.br ^empty
^empty:
  llvm.store %null, %slot : !llvm.ptr, !llvm.ptr
  %sigp = llvm.getelementptr %slot[0, 1] : (!llvm.ptr) -> !llvm.ptr, !slot
  llvm.store %z, %sigp : i64, !llvm.ptr
  llvm.return
}

// The runtime calls it before it frees a buffer it handed to @forward (a
// session's KV cache): the device copies of that buffer are freed and their
// slots emptied, so a later buffer at the same address is not taken for it
// and a process that makes many sessions does not fill the table.
llvm.func @moir_hl_forget(%host: !llvm.ptr) {
  %i0 = llvm.mlir.constant(0 : i32) : i32
  %i1 = llvm.mlir.constant(1 : i32) : i32
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %lock = llvm.mlir.addressof @moir_hl_resident_lock : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_resident_slots : !llvm.ptr
  %countp = llvm.mlir.addressof @moir_hl_resident_count : !llvm.ptr
  llvm.br ^acquire
^acquire:
  %x = llvm.cmpxchg %lock, %i0, %i1 acquire monotonic : !llvm.ptr, i32
  %got = llvm.extractvalue %x[1] : !llvm.struct<(i32, i1)>
  llvm.cond_br %got, ^locked, ^acquire
^locked:
  %count = llvm.load %countp : !llvm.ptr -> i64
  llvm.br ^loop(%z : i64)
^loop(%i: i64):
  %more = llvm.icmp "ult" %i, %count : i64
  llvm.cond_br %more, ^body, ^end
^body:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %key = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %mine = llvm.icmp "eq" %key, %host : !llvm.ptr
  %n = llvm.add %i, %one : i64
  llvm.cond_br %mine, ^free, ^loop(%n : i64)
^free:
  llvm.call @moir_hl_resident_free(%slot) : (!llvm.ptr) -> ()
  llvm.br ^loop(%n : i64)
^end:
  llvm.store %i0, %lock atomic release {alignment = 4 : i64} : i32, !llvm.ptr
  llvm.return
}

// Makes the device's copy of a KV cache current in bytes [begin, end) of
// its `total`: the buffer kept (copied whole the first time), then a crop
// of it as bytes, rounded out to whole 4 KB pages (every host byte is
// current, so the extra ones are too; Halide's OpenCL and Vulkan crops are
// offsets into the kept buffer), copied from the host. On Vulkan (padded >
// 0) the crop is of the staged padded buffer the kept descriptor crops;
// `total` is then a multiple of 64 (moir-halide-select-kernels), so every
// copy is too, as Halide's Vulkan allocator needs. 0 also when the table has
// no room: the calls that read the cache then copy it whole, as any input.
llvm.func internal @moir_hl_sync_rows(%desc: !llvm.ptr, %iface: !llvm.ptr, %sig: i64,
                                      %begin: i64, %end: i64, %total: i64,
                                      %padded: i64) -> i32 {
  %i0 = llvm.mlir.constant(0 : i32) : i32
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %view = llvm.alloca %one x !buf : (i64) -> !llvm.ptr
  %crop = llvm.alloca %one x !buf : (i64) -> !llvm.ptr
  %viewdim = llvm.alloca %one x !llvm.struct<(i32, i32, i32, i32)> : (i64) -> !llvm.ptr
  %cropdim = llvm.alloca %one x !llvm.struct<(i32, i32, i32, i32)> : (i64) -> !llvm.ptr
  // Staged (Vulkan, padded > 0): the first copy stages all `total` bytes.
  %isstaged = llvm.icmp "ne" %padded, %z : i64
  %kbytes = llvm.select %isstaged, %total, %z : i1, i64
  %kept = llvm.call @moir_hl_resident(%desc, %iface, %sig, %kbytes, %padded) : (!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr
  %nokept = llvm.icmp "eq" %kept, %null : !llvm.ptr
  %page = llvm.mlir.constant(4096 : i64) : i64
  %mask = llvm.mlir.constant(-4096 : i64) : i64
  %first = llvm.and %begin, %mask : i64
  %endup = llvm.add %end, %page : i64
  %endup1 = llvm.sub %endup, %one : i64
  %last0 = llvm.and %endup1, %mask : i64
  %over = llvm.icmp "ugt" %last0, %total : i64
  %last = llvm.select %over, %total, %last0 : i1, i64
  %nothing = llvm.icmp "uge" %first, %last : i64
  %skip = llvm.or %nokept, %nothing : i1
  llvm.cond_br %skip, ^done(%i0 : i32), ^copy
^copy:
  %d0 = llvm.mlir.constant(0 : i32) : i32
  %d1 = llvm.mlir.constant(1 : i32) : i32
  // The device allocation: the kept descriptor's, or where it is a crop
  // of a staged buffer (the slot's next descriptor), that buffer's.
  %padbuf = llvm.getelementptr %kept[1] : (!llvm.ptr) -> !llvm.ptr, !buf
  %owner = llvm.select %isstaged, %padbuf, %kept : i1, !llvm.ptr
  %devp = llvm.getelementptr %owner[0, 0] : (!llvm.ptr) -> !llvm.ptr, !buf
  %dev = llvm.load %devp : !llvm.ptr -> i64
  %kifacep = llvm.getelementptr %owner[0, 1] : (!llvm.ptr) -> !llvm.ptr, !buf
  %kiface = llvm.load %kifacep : !llvm.ptr -> !llvm.ptr
  %khostp = llvm.getelementptr %kept[0, 2] : (!llvm.ptr) -> !llvm.ptr, !buf
  %khost = llvm.load %khostp : !llvm.ptr -> !llvm.ptr
  // The kept buffer as bytes: the same device allocation, one dimension.
  %total32 = llvm.trunc %total : i64 to i32
  %vd0 = llvm.getelementptr %viewdim[0, 0] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %d0, %vd0 : i32, !llvm.ptr
  %vd1 = llvm.getelementptr %viewdim[0, 1] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %total32, %vd1 : i32, !llvm.ptr
  %vd2 = llvm.getelementptr %viewdim[0, 2] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %d1, %vd2 : i32, !llvm.ptr
  %vd3 = llvm.getelementptr %viewdim[0, 3] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %d0, %vd3 : i32, !llvm.ptr
  @VIEWBUF@
  // Its crop [first, last): the host's bytes there are current.
  %first32 = llvm.trunc %first : i64 to i32
  %span = llvm.sub %last, %first : i64
  %span32 = llvm.trunc %span : i64 to i32
  %cd0 = llvm.getelementptr %cropdim[0, 0] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %first32, %cd0 : i32, !llvm.ptr
  %cd1 = llvm.getelementptr %cropdim[0, 1] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %span32, %cd1 : i32, !llvm.ptr
  %cd2 = llvm.getelementptr %cropdim[0, 2] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %d1, %cd2 : i32, !llvm.ptr
  %cd3 = llvm.getelementptr %cropdim[0, 3] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i32, i32, i32, i32)>
  llvm.store %d0, %cd3 : i32, !llvm.ptr
  %bufend = llvm.getelementptr %null[1] : (!llvm.ptr) -> !llvm.ptr, !buf
  %bufbytes = llvm.ptrtoint %bufend : !llvm.ptr to i64
  "llvm.intr.memcpy"(%crop, %view, %bufbytes) <{isVolatile = false}> : (!llvm.ptr, !llvm.ptr, i64) -> ()
  %c0 = llvm.getelementptr %crop[0, 0] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %z, %c0 : i64, !llvm.ptr
  %c1 = llvm.getelementptr %crop[0, 1] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %null, %c1 : !llvm.ptr, !llvm.ptr
  %chost = llvm.getelementptr %khost[%first] : (!llvm.ptr, i64) -> !llvm.ptr, i8
  %c2 = llvm.getelementptr %crop[0, 2] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %chost, %c2 : !llvm.ptr, !llvm.ptr
  %c8 = llvm.getelementptr %crop[0, 8] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %cropdim, %c8 : !llvm.ptr, !llvm.ptr
  %rc1 = llvm.call @halide_device_crop(%null, %view, %crop) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
  %cropped = llvm.icmp "eq" %rc1, %i0 : i32
  llvm.cond_br %cropped, ^write, ^done(%rc1 : i32)
^write:
  %dirty = llvm.mlir.constant(1 : i64) : i64
  %c3 = llvm.getelementptr %crop[0, 3] : (!llvm.ptr) -> !llvm.ptr, !buf
  llvm.store %dirty, %c3 : i64, !llvm.ptr
  %rc2 = llvm.call @halide_copy_to_device(%null, %crop, %kiface) : (!llvm.ptr, !llvm.ptr, !llvm.ptr) -> i32
  llvm.store %z, %c3 : i64, !llvm.ptr
  %rc3 = llvm.call @halide_device_release_crop(%null, %crop) : (!llvm.ptr, !llvm.ptr) -> i32
  %rc = llvm.or %rc2, %rc3 : i32
  llvm.br ^done(%rc : i32)
^done(%r: i32):
  llvm.return %r : i32
}

llvm.func internal @moir_hl_resident_release() {
  %z = llvm.mlir.constant(0 : i64) : i64
  %one = llvm.mlir.constant(1 : i64) : i64
  %null = llvm.mlir.zero : !llvm.ptr
  %slots = llvm.mlir.addressof @moir_hl_resident_slots : !llvm.ptr
  %countp = llvm.mlir.addressof @moir_hl_resident_count : !llvm.ptr
  %count = llvm.load %countp : !llvm.ptr -> i64
  llvm.br ^loop(%z : i64)
^loop(%i: i64):
  %more = llvm.icmp "ult" %i, %count : i64
  llvm.cond_br %more, ^body, ^end
^body:
  %slot = llvm.getelementptr %slots[0, %i] : (!llvm.ptr, i64) -> !llvm.ptr, !table
  %key = llvm.load %slot : !llvm.ptr -> !llvm.ptr
  %empty = llvm.icmp "eq" %key, %null : !llvm.ptr
  llvm.cond_br %empty, ^next, ^free
^free:
  llvm.call @moir_hl_resident_free(%slot) : (!llvm.ptr) -> ()
  llvm.br ^next
^next:
  %n = llvm.add %i, %one : i64
  llvm.br ^loop(%n : i64)
^end:
  llvm.store %z, %countp : i64, !llvm.ptr
  llvm.return
}

llvm.mlir.global_dtors dtors = [@moir_hl_resident_release], priorities = [65535 : i32], data = [#llvm.zero]
)mlir";

} // namespace

std::string moir::halide::paddedDimStores(llvm::StringRef dims, llvm::StringRef padded,
                                          llvm::StringRef prefix) {
  std::string text;
  llvm::raw_string_ostream os(text);
  for (int h = 0; h < kResidentMaxRank; ++h) {
    llvm::StringRef fields[] = {"%d0", h == 0 ? padded : "%d1", h == 0 ? "%d1" : padded, "%d0"};
    for (int f = 0; f < 4; ++f)
      os << "  %" << prefix << h << f << " = llvm.getelementptr " << dims << "[0, " << h << ", "
         << f << "] : (!llvm.ptr) -> !llvm.ptr, !dims\n  llvm.store " << fields[f] << ", %"
         << prefix << h << f << " : i32, !llvm.ptr\n";
  }
  return text;
}

std::string moir::halide::byteBufferStores(llvm::StringRef buf, llvm::StringRef prefix,
                                           const ByteBufferFields &f) {
  std::string p = ("%" + prefix).str();
  std::string code = p + "u8code", bits = p + "u8bits", lanes = p + "lanes";
  std::pair<std::string, llvm::StringRef> fields[] = {
      {f.device.str(), "i64"}, {f.interface.str(), "!llvm.ptr"}, {f.host.str(), "!llvm.ptr"},
      {f.flags.str(), "i64"},  {code, "i8"},                      {bits, "i8"},
      {lanes, "i16"},          {f.rank.str(), "i32"},             {f.dims.str(), "!llvm.ptr"},
      {"%null", "!llvm.ptr"}};
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "  " << code << " = llvm.mlir.constant(1 : i8) : i8\n  " << bits
     << " = llvm.mlir.constant(8 : i8) : i8\n  " << lanes
     << " = llvm.mlir.constant(1 : i16) : i16\n";
  for (auto [i, field] : llvm::enumerate(fields))
    os << "  " << p << i << " = llvm.getelementptr " << buf << "[0, " << i
       << "] : (!llvm.ptr) -> !llvm.ptr, !buf\n  llvm.store " << field.first << ", " << p << i
       << " : " << field.second << ", !llvm.ptr\n";
  return text;
}

namespace {

struct HalideResidentWeightsPass
    : moir::impl::HalideResidentWeightsPassBase<HalideResidentWeightsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto declared = [&](StringRef name) {
      auto f = module.lookupSymbol<LLVM::LLVMFuncOp>(name);
      return f && f.isExternal();
    };
    if (!declared(moir::halide::residentFunctionName()) &&
        !declared(moir::halide::residentOrStagedFunctionName()) &&
        !declared(moir::halide::syncRowsFunctionName()))
      return;
    auto forward = module.lookupSymbol<LLVM::LLVMFuncOp>("forward");
    if (!forward) {
      module.emitError() << "moir-halide-resident-weights: no @forward to size the table of "
                            "weights on the device by";
      return signalPassFailure();
    }
    if (module.lookupSymbol("moir_hl_resident_slots") ||
        llvm::any_of(module.getOps<LLVM::GlobalDtorsOp>(), [](auto) { return true; })) {
      module.emitError() << "moir-halide-resident-weights: the module already has the table "
                            "or destructors of its own";
      return signalPassFailure();
    }
    std::string text = kTable.str();
    auto replace = [&](llvm::StringRef from, const std::string &to) {
      for (size_t at; (at = text.find(from.str())) != std::string::npos;)
        text.replace(at, from.size(), to);
    };
    // Four slots per buffer @forward takes (moir.abi: one rank per
    // argument, -1 for a scalar; the lowered arguments are the buffers'
    // expanded descriptors): a weight takes one, a KV cache one per live
    // session (moir_hl_forget empties it when the session ends).
    int64_t buffers = 0;
    if (auto abi = forward->getAttrOfType<DenseI64ArrayAttr>(moir::attrs::abiName()))
      buffers = llvm::count_if(abi.asArrayRef(), [](int64_t rank) { return rank >= 0; });
    else
      buffers = forward.getNumArguments();
    replace("@CAPACITY@", std::to_string(4 * std::max<int64_t>(buffers, 1)));
    replace("@DIMS@", moir::halide::paddedDimStores("%paddims", "%p32", "pd"));
    replace("@PADBUF@", moir::halide::byteBufferStores(
                            "%pad", "p", {"%z", "%null", "%scratch", "%one", "%rank", "%paddims"}));
    replace("@VIEWBUF@", moir::halide::byteBufferStores(
                             "%view", "v", {"%dev", "%kiface", "%khost", "%z", "%d1", "%viewdim"}));
    OwningOpRef<ModuleOp> table = parseSourceString<ModuleOp>(text, ParserConfig(&getContext()));
    if (!table) {
      module.emitError() << "moir-halide-resident-weights: the table's IR does not parse";
      return signalPassFailure();
    }
    // Declarations the module has already (the bufferization's) are kept;
    // moir_hl_resident's is replaced by the definition.
    SymbolTable symbols(module);
    for (Operation &op : llvm::make_early_inc_range(table->getBody()->getOperations())) {
      if (auto symbol = dyn_cast<SymbolOpInterface>(op)) {
        Operation *existing = symbols.lookup(symbol.getName());
        auto func = dyn_cast<LLVM::LLVMFuncOp>(op);
        if (existing && func && func.isExternal())
          continue;
        if (existing) {
          if (!isa<LLVM::LLVMFuncOp>(existing) || !cast<LLVM::LLVMFuncOp>(existing).isExternal()) {
            existing->emitError() << "moir-halide-resident-weights: '" << symbol.getName()
                                  << "' is already defined";
            return signalPassFailure();
          }
          symbols.erase(existing);
        }
      }
      op.remove();
      if (isa<SymbolOpInterface>(op))
        symbols.insert(&op);
      else
        module.getBody()->push_back(&op);
    }
  }
};

} // namespace
