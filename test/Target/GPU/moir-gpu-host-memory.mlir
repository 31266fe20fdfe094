// RUN: moir-opt %s -moir-gpu-host-memory | FileCheck %s

// Host buffers live on the device; a constant a kernel reads is re-created
// inside the kernel (outlining then copies the global into the device module).
// CHECK-LABEL: func.func @f
// CHECK: %[[BUF:.*]] = gpu.alloc  (%{{.*}}) : memref<?xf32>
// CHECK: gpu.launch
// CHECK: memref.get_global @table : memref<4xf32>
// CHECK: gpu.dealloc  %[[BUF]] : memref<?xf32>
// CHECK-NOT: memref.alloc
// CHECK-NOT: memref.dealloc
memref.global "private" constant @table : memref<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
func.func @f(%n: index) {
  %c1 = arith.constant 1 : index
  %c0 = arith.constant 0 : index
  %table = memref.get_global @table : memref<4xf32>
  %buf = memref.alloc(%n) : memref<?xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    %v = memref.load %table[%c0] : memref<4xf32>
    memref.store %v, %buf[%c0] : memref<?xf32>
    gpu.terminator
  }
  memref.dealloc %buf : memref<?xf32>
  return
}
