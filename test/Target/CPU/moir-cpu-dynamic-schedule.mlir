// RUN: moir-opt %s -moir-cpu-dynamic-schedule -split-input-file | FileCheck %s

// A parallel region's worksharing loop without a schedule: dynamic (the
// runtime's static shares with stealing), its nest and barrier unchanged.
// CHECK-LABEL: func.func @region_loop
// CHECK: omp.parallel {
// CHECK-NEXT: omp.wsloop schedule(dynamic) {
// CHECK-NEXT: omp.loop_nest (%{{.*}}) : index = (%c0) to (%arg0) step (%c1) {
func.func @region_loop(%n: index, %buf: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %v = arith.constant 1.0 : f32
  omp.parallel {
    omp.wsloop {
      omp.loop_nest (%i) : index = (%c0) to (%n) step (%c1) {
        memref.store %v, %buf[%i] : memref<?xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  return
}

// -----

// A schedule already chosen stays; a loop outside any parallel region
// (no team to share with) gets none.
// CHECK-LABEL: func.func @kept
// CHECK: omp.wsloop schedule(static) {
// CHECK-LABEL: func.func @orphaned
// CHECK: omp.wsloop {
func.func @kept(%n: index, %buf: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %v = arith.constant 1.0 : f32
  omp.parallel {
    omp.wsloop schedule(static) {
      omp.loop_nest (%i) : index = (%c0) to (%n) step (%c1) {
        memref.store %v, %buf[%i] : memref<?xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  return
}
func.func @orphaned(%n: index, %buf: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %v = arith.constant 1.0 : f32
  omp.wsloop {
    omp.loop_nest (%i) : index = (%c0) to (%n) step (%c1) {
      memref.store %v, %buf[%i] : memref<?xf32>
      omp.yield
    }
  }
  return
}
