// RUN: moir-opt %s -moir-cpu-parallel-if -split-input-file | FileCheck %s

// A region of one worksharing loop: forked only for more than one
// iteration, counted before the region (the loop keeps its barrier).
// CHECK-LABEL: func.func @last_in_region
// CHECK: %[[SPAN:.*]] = arith.subi %arg0, %c0
// CHECK-NEXT: %[[TRIPS:.*]] = arith.ceildivsi %[[SPAN]], %c1
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1 : index
// CHECK-NEXT: %[[FORK:.*]] = arith.cmpi sgt, %[[TRIPS]], %[[ONE]] : index
// CHECK-NEXT: omp.parallel if(%[[FORK]])
// CHECK-NEXT: omp.wsloop {
func.func @last_in_region(%n: index, %buf: memref<?xf32>) {
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

// Two dimensions, one bound a constant defined inside the region (copied
// out for the count): the trips are the product.
// CHECK-LABEL: func.func @two_dims
// CHECK: %[[ROWS:.*]] = arith.ceildivsi
// CHECK: %[[C8:.*]] = arith.constant 8 : index
// CHECK: %[[COLS:.*]] = arith.ceildivsi
// CHECK-NEXT: %[[TRIPS:.*]] = arith.muli %[[ROWS]], %[[COLS]] : index
// CHECK: arith.cmpi sgt, %[[TRIPS]]
// CHECK: omp.parallel if(
func.func @two_dims(%n: index, %buf: memref<?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %v = arith.constant 1.0 : f32
  omp.parallel {
    %c8 = arith.constant 8 : index
    omp.wsloop {
      omp.loop_nest (%i, %j) : index = (%c0, %c0) to (%n, %c8) step (%c1, %c1) {
        memref.store %v, %buf[%i, %j] : memref<?x8xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  return
}

// -----

// A region of two worksharing loops keeps its unconditional fork.
// CHECK-LABEL: func.func @work_after
// CHECK-NOT: arith.ceildivsi
// CHECK: omp.parallel {
// CHECK-NEXT: omp.wsloop {
func.func @work_after(%n: index, %buf: memref<?xf32>, %out: memref<?xf32>) {
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
    omp.wsloop {
      omp.loop_nest (%i) : index = (%c0) to (%n) step (%c1) {
        %j = arith.subi %n, %i : index
        %k = arith.subi %j, %c1 : index
        %x = memref.load %buf[%k] : memref<?xf32>
        memref.store %x, %out[%i] : memref<?xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  return
}
