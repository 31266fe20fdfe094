// RUN: moir-opt %s -moir-prepare-entry-abi -split-input-file -verify-diagnostics | FileCheck %s

// The entry's argument ranks (-1: index) are recorded; memref.copy becomes
// linalg.copy so the code needs no runtime copy helper.
// CHECK-LABEL: func.func private @forward
// CHECK-SAME: moir.abi = array<i64: 1, -1, 3, 2>
// CHECK-NOT: memref.copy
// CHECK: linalg.copy ins(%{{.*}} : memref<?x8xf32>) outs(%{{.*}} : memref<?x8xf32>)
func.func private @forward(%ids: memref<?xi32>, %off: index, %cache: memref<16x2x4xf32>, %out: memref<?x8xf32>) {
  %c0 = arith.constant 0 : index
  %n = memref.dim %out, %c0 : memref<?x8xf32>
  %tmp = memref.alloc(%n) : memref<?x8xf32>
  memref.copy %tmp, %out : memref<?x8xf32> to memref<?x8xf32>
  memref.dealloc %tmp : memref<?x8xf32>
  return
}

// -----

// A result that did not become an out-parameter is refused.
// expected-error @+1 {{@forward must return its results through arguments by now}}
func.func private @forward(%a: memref<4xf32>) -> memref<4xf32> {
  return %a : memref<4xf32>
}
