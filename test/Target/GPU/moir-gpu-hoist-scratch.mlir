// RUN: moir-opt %s -pass-pipeline='builtin.module(gpu.module(gpu.func(moir-gpu-hoist-scratch)))' | FileCheck %s

// Fixed-size stack buffers inside the bounds check and a loop move to the
// entry block; one sized by a kernel value, and one in an alloca scope, stay.
// CHECK-LABEL: gpu.func @route
// CHECK-NEXT: %[[L:.*]] = memref.alloca() {alignment = 64 : i64} : memref<4xi32>
// CHECK-NEXT: %[[S:.*]] = memref.alloca() {alignment = 64 : i64} : memref<8xf32>
// CHECK: gpu.thread_id x
// CHECK: scf.if
// CHECK-NOT: memref.alloca() {alignment = 64 : i64} : memref<8xf32>
// CHECK: memref.store %{{.*}}, %[[S]]
// CHECK: scf.for
// CHECK: memref.store %{{.*}}, %[[L]]
// CHECK: memref.alloca(%{{.*}}) : memref<?xf32>
// CHECK: memref.alloca_scope
// CHECK-NEXT: memref.alloca() : memref<2xf32>
gpu.module @kernels {
  gpu.func @route(%n: index, %x: f32, %m: index) kernel {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c4 = arith.constant 4 : index
    %z = arith.constant 0 : i32
    %t = gpu.thread_id x
    %in = arith.cmpi ult, %t, %n : index
    scf.if %in {
      %s = memref.alloca() {alignment = 64 : i64} : memref<8xf32>
      memref.store %x, %s[%c0] : memref<8xf32>
      scf.for %i = %c0 to %c4 step %c1 {
        %l = memref.alloca() {alignment = 64 : i64} : memref<4xi32>
        memref.store %z, %l[%i] : memref<4xi32>
      }
      %d = memref.alloca(%m) : memref<?xf32>
      memref.store %x, %d[%c0] : memref<?xf32>
      memref.alloca_scope {
        %a = memref.alloca() : memref<2xf32>
        memref.store %x, %a[%c0] : memref<2xf32>
      }
    }
    gpu.return
  }
}
