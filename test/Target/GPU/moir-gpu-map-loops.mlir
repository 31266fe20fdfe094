// RUN: moir-opt %s -split-input-file -moir-gpu-map-loops | FileCheck %s

// The innermost dimension is tiled into blocks of threads (a short static
// one rounds up to a warp: 72 -> 96) and maps to block x / thread x; the
// outer one maps to block y.
// CHECK-LABEL: func.func @elementwise
// CHECK: %c96 = arith.constant 96 : index
// CHECK: scf.parallel
// CHECK: scf.parallel
// CHECK: {mapping = [#gpu.loop_dim_map<processor = sequential{{.*}}>, #gpu.loop_dim_map<processor = thread_x
// CHECK: {mapping = [#gpu.loop_dim_map<processor = block_y{{.*}}>, #gpu.loop_dim_map<processor = block_x
func.func @elementwise(%a: memref<?x72xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c72 = arith.constant 72 : index
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c72) step (%c1, %c1) {
    %v = memref.load %a[%i, %j] : memref<?x72xf32>
    %w = arith.negf %v : f32
    memref.store %w, %a[%i, %j] : memref<?x72xf32>
    scf.reduce
  }
  return
}

// -----

// A warp loop: lanes on thread x, four outputs per block on thread y.
// CHECK-LABEL: func.func @warps
// CHECK: %c4 = arith.constant 4 : index
// CHECK: {mapping = [#gpu.loop_dim_map<processor = thread_y{{.*}}>, #gpu.loop_dim_map<processor = thread_x
// CHECK: {mapping = [#gpu.loop_dim_map<processor = block_x{{.*}}>, #gpu.loop_dim_map<processor = sequential
func.func @warps(%a: memref<?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c32 = arith.constant 32 : index
  scf.parallel (%i, %lane) = (%c0, %c0) to (%n, %c32) step (%c1, %c1) {
    %v = memref.load %a[%i] : memref<?xf32>
    scf.reduce
  } {moir.warp_reduce}
  return
}

// -----

// A serial loop is one thread.
// CHECK-LABEL: func.func @serial
// CHECK: {mapping = [#gpu.loop_dim_map<processor = thread_x
// CHECK-SAME: moir.serial
func.func @serial(%a: memref<5xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f32
  scf.parallel (%t) = (%c0) to (%c1) step (%c1) {
    memref.store %z, %a[%c0] : memref<5xf32>
    scf.reduce
  } {moir.serial}
  return
}
