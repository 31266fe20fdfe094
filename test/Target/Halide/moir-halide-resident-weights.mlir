// RUN: moir-opt %s --split-input-file --moir-halide-resident-weights --verify-diagnostics | FileCheck %s

// The bufferization declared moir_hl_resident (a device call reads a
// weight): the pass defines it, the table sized by @forward's arguments
// (four slots each: 12), its count and lock, moir_hl_forget (exported, for
// the runtime), moir_hl_sync_rows, and a destructor that frees the device
// buffers. The module's own declarations stay, once each.
// CHECK-LABEL: module
// CHECK-COUNT-1: llvm.func @halide_malloc(!llvm.ptr, i64) -> !llvm.ptr
// CHECK-NOT: llvm.func @halide_malloc
// CHECK: llvm.mlir.global internal @moir_hl_resident_slots() {{.*}} : !llvm.array<12 x struct<(ptr, i64, struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>, struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>, array<4 x struct<(i32, i32, i32, i32)>>, array<4 x struct<(i32, i32, i32, i32)>>)>>
// CHECK: llvm.mlir.global internal @moir_hl_resident_count(0 : i64)
// CHECK: llvm.mlir.global internal @moir_hl_resident_lock(0 : i32)
// CHECK: llvm.func internal @moir_hl_resident(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64) -> !llvm.ptr
// Found under the lock by host address and signature:
// CHECK: llvm.cmpxchg {{.*}} acquire monotonic
// CHECK: llvm.icmp "eq" {{.*}} : !llvm.ptr
// CHECK: llvm.icmp "eq" {{.*}} : i64
// else a slot moir_hl_forget emptied (key null) is filled, or the next one:
// CHECK: llvm.select %{{.*}}, %{{.*}}, %{{.*}} : i1, i64
// CHECK: llvm.select %{{.*}}, %{{.*}}, %{{.*}} : i1, i64
// and filled (moir_hl_fill), emptied again if the copy failed:
// CHECK: llvm.call @moir_hl_fill(
// CHECK: llvm.call @moir_hl_resident_free(
// CHECK: llvm.store {{.*}} atomic release
// A slot filled: the buffer copied to the device, directly or staged and
// cropped:
// CHECK: llvm.func internal @moir_hl_fill(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64) -> i32
// CHECK: llvm.call @halide_copy_to_device
// CHECK: llvm.call @halide_malloc
// CHECK: llvm.call @halide_copy_to_device
// CHECK: llvm.call @halide_device_crop
// CHECK: llvm.call @halide_free
// Vulkan's calls: the kept copy, or the caller's slot filled for one call
// (freed if that failed):
// CHECK: llvm.func internal @moir_hl_resident_or_staged(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: !llvm.ptr) -> !llvm.ptr
// CHECK: llvm.call @moir_hl_resident(
// CHECK: llvm.call @moir_hl_fill(
// CHECK: llvm.call @moir_hl_resident_free(
// A slot's device buffers freed, its key emptied:
// CHECK: llvm.func internal @moir_hl_resident_free(%{{.*}}: !llvm.ptr)
// CHECK: llvm.call @halide_device_release_crop
// CHECK: llvm.call @halide_device_free
// CHECK: llvm.call @halide_device_free
// The runtime's hook, under the lock, for every slot of that address:
// CHECK: llvm.func @moir_hl_forget(%{{.*}}: !llvm.ptr)
// CHECK: llvm.cmpxchg
// CHECK: llvm.call @moir_hl_resident_free
// CHECK: llvm.store {{.*}} atomic release
// A KV cache's rows: the kept buffer (staged whole where padded > 0), then
// a crop of its bytes (of the staged buffer's, on Vulkan) rounded out to
// 4 KB, copied from the host:
// CHECK: llvm.func internal @moir_hl_sync_rows(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64) -> i32
// CHECK: llvm.call @moir_hl_resident(
// CHECK: llvm.mlir.constant(-4096 : i64)
// CHECK: llvm.getelementptr %{{.*}}[1] : (!llvm.ptr) -> !llvm.ptr, !llvm.struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>
// CHECK: llvm.call @halide_device_crop
// CHECK: llvm.call @halide_copy_to_device
// CHECK: llvm.call @halide_device_release_crop
// CHECK: llvm.func internal @moir_hl_resident_release()
// CHECK: llvm.call @moir_hl_resident_free
// CHECK: llvm.mlir.global_dtors dtors = [@moir_hl_resident_release], priorities = [65535 : i32]
// CHECK-NOT: llvm.func @moir_hl_resident(
llvm.func @moir_hl_resident(!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr
llvm.func @halide_malloc(!llvm.ptr, i64) -> !llvm.ptr
llvm.func @forward(%a: !llvm.ptr, %b: !llvm.ptr, %c: i64) {
  llvm.return
}

// -----

// Only moir.halide_sync_rows' function declared (a cache read on the device
// through it): the same definitions, the declaration replaced.
// CHECK-LABEL: module
// CHECK: llvm.func internal @moir_hl_resident(
// CHECK: llvm.func @moir_hl_forget(
// CHECK: llvm.func internal @moir_hl_sync_rows(
// CHECK-NOT: llvm.func @moir_hl_sync_rows(
llvm.func @moir_hl_sync_rows(!llvm.ptr, !llvm.ptr, i64, i64, i64, i64, i64) -> i32
llvm.func @forward(%a: !llvm.ptr) {
  llvm.return
}

// -----

// Only a Vulkan call's functions declared: the same definitions, both
// declarations replaced.
// CHECK-LABEL: module
// CHECK: llvm.func internal @moir_hl_resident(
// CHECK: llvm.func internal @moir_hl_resident_or_staged(
// CHECK: llvm.func internal @moir_hl_resident_free(
// CHECK-NOT: llvm.func @moir_hl_resident_or_staged(
// CHECK-NOT: llvm.func @moir_hl_resident_free(
llvm.func @moir_hl_resident_or_staged(!llvm.ptr, !llvm.ptr, i64, i64, i64, !llvm.ptr) -> !llvm.ptr
llvm.func @moir_hl_resident_free(!llvm.ptr)
llvm.func @forward(%a: !llvm.ptr) {
  llvm.return
}

// -----

// No device call keeps a weight: nothing is added.
// CHECK-LABEL: module
// CHECK-NOT: moir_hl_resident
// CHECK-NOT: global_dtors
// CHECK: llvm.func @forward
llvm.func @forward(%a: !llvm.ptr) {
  llvm.return
}

// -----

// expected-error @below {{moir-halide-resident-weights: no @forward to size the table of weights on the device by}}
module {
  llvm.func @moir_hl_resident(!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr
}

// -----

// expected-error @below {{moir-halide-resident-weights: the module already has the table or destructors of its own}}
module {
  llvm.func @moir_hl_resident(!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr
  llvm.func @forward() {
    llvm.return
  }
  llvm.func @other() {
    llvm.return
  }
  llvm.mlir.global_dtors dtors = [@other], priorities = [65535 : i32], data = [#llvm.zero]
}
