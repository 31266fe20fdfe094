// RUN: moir-opt %s -moir-export-entry | FileCheck %s

// moir_forward(void **args) unpacks a descriptor {allocated, aligned, offset,
// size, stride} for the rank-1 buffer and an int64 for the index, then calls
// @forward; per-layer functions stay out of line.
// CHECK-LABEL: llvm.func @layer_0
// CHECK-SAME: no_inline
// CHECK: llvm.func @moir_forward(%{{.*}}: !llvm.ptr)
// CHECK: %[[P0:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %[[P0]] : !llvm.ptr -> !llvm.ptr
// CHECK-COUNT-3: llvm.load %{{.*}} : !llvm.ptr -> i64
// CHECK: llvm.load %{{.*}} : !llvm.ptr -> i64
// CHECK: llvm.call @forward(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (!llvm.ptr, !llvm.ptr, i64, i64, i64, i64) -> ()
llvm.func @layer_0() attributes {moir.layer = 0 : i64} {
  llvm.return
}
llvm.func @forward(%alloc: !llvm.ptr, %aligned: !llvm.ptr, %offset: i64, %size: i64, %stride: i64, %off: i64) attributes {moir.abi = array<i64: 1, -1>} {
  llvm.call @layer_0() : () -> ()
  llvm.return
}
