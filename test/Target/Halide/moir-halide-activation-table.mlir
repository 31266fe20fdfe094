// RUN: moir-opt %s --split-input-file --moir-halide-activation-table | FileCheck %s

// The bufferization declared moir_hl_keep (a call keeps its results on the
// device): the pass defines the table, per thread, 256 slots of {host
// address, descriptor, dimensions}, and its functions; every free of the
// module first releases the slots of that buffer.
// CHECK-LABEL: module
// CHECK: llvm.func @use(%[[P:.*]]: !llvm.ptr)
// CHECK-NEXT: llvm.call @moir_hl_release_activation(%[[P]]) : (!llvm.ptr) -> ()
// CHECK-NEXT: llvm.call @free(%[[P]]) : (!llvm.ptr) -> ()
// CHECK: llvm.mlir.global internal thread_local @moir_hl_activation_slots() {{.*}} : !llvm.array<256 x struct<(ptr, struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>, array<4 x struct<(i32, i32, i32, i32)>>, struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>, array<4 x struct<(i32, i32, i32, i32)>>)>>
// CHECK: llvm.mlir.global internal thread_local @moir_hl_activation_used(0 : i64)
// CHECK: llvm.mlir.global internal thread_local @moir_hl_activation_overflow(0 : i32)
// A slot emptied: its crop released (Vulkan), its device buffer freed.
// CHECK: llvm.func internal @moir_hl_activation_empty
// CHECK: llvm.call @halide_device_release_crop
// CHECK: llvm.call @halide_device_free
// Kept: the descriptor and its dimensions copied into a free slot keyed by
// the result's host address (on Vulkan its crop too, which keeps Halide's
// allocator from reusing the region), the caller's device fields cleared;
// no slot free: on Vulkan (staged) -1, else copied back, unless it was.
// A descriptor moved into a slot: copied with its dimensions, its own
// device fields cleared.
// CHECK: llvm.func internal @moir_hl_activation_take(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// CHECK: "llvm.intr.memcpy"
// CHECK: llvm.call @moir_hl_activation_set_device(
// CHECK: llvm.func internal @moir_hl_keep(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i32, %{{.*}}: i32) -> i32
// CHECK: llvm.call @moir_hl_activation_take(
// and on Vulkan the result's crop with it:
// CHECK: llvm.call @moir_hl_activation_take(
// CHECK: llvm.call @halide_copy_to_host
// Bound: the kept buffer itself (OpenCL), or on Vulkan a crop of it through
// a padded byte view of the input's rank.
// A miss is 0 only after an overflow this forward, else -1.
// CHECK: llvm.func internal @moir_hl_bind(%{{.*}}: !llvm.ptr, %{{.*}}: i32) -> i32
// CHECK: llvm.alloca
// CHECK: llvm.call @halide_device_crop
// CHECK: llvm.mlir.addressof @moir_hl_activation_overflow
// CHECK: llvm.mlir.constant(-1 : i32)
// CHECK: llvm.func internal @moir_hl_unbind(%{{.*}}: !llvm.ptr, %{{.*}}: i32)
// CHECK: llvm.call @halide_device_release_crop
// A freed pointer releases the slots whose host address lies within 64
// bytes of it (the aligned start of that allocation).
// CHECK: llvm.func internal @moir_hl_release_activation(%{{.*}}: !llvm.ptr)
// CHECK: llvm.icmp "ult" %{{.*}}, %{{.*}} : i64
// CHECK: llvm.func internal @moir_hl_release_activations()
module {
  llvm.func @moir_hl_keep(!llvm.ptr, !llvm.ptr, !llvm.ptr, i32, i32) -> i32
  llvm.func @moir_hl_bind(!llvm.ptr, i32) -> i32
  llvm.func @moir_hl_unbind(!llvm.ptr, i32)
  llvm.func @moir_hl_release_activations()
  llvm.func @free(!llvm.ptr)
  llvm.func @use(%p: !llvm.ptr) {
    llvm.call @free(%p) : (!llvm.ptr) -> ()
    llvm.return
  }
}

// -----

// Nothing kept: the module is left as it is.
// CHECK-LABEL: module
// CHECK-NOT: moir_hl_release_activation
// CHECK-NOT: moir_hl_activation_slots
module {
  llvm.func @free(!llvm.ptr)
  llvm.func @use(%p: !llvm.ptr) {
    llvm.call @free(%p) : (!llvm.ptr) -> ()
    llvm.return
  }
}
