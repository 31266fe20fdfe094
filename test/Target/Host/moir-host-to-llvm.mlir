// RUN: moir-opt %s -moir-host-to-llvm -reconcile-unrealized-casts | FileCheck %s

// One conversion takes the host code's dialects to LLVM: the memref's
// descriptor becomes the function's arguments, an index i64, a math op with
// an LLVM intrinsic the intrinsic, one without a libm call, an OpenMP loop's
// body LLVM, the branches llvm.br.
// CHECK: llvm.func @erff(f32) -> f32
// CHECK-LABEL: llvm.func @host(
// CHECK-SAME: %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %[[I:.*]]: i64
// CHECK: %[[P:.*]] = llvm.getelementptr {{.*}}[%[[I]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK: %[[X:.*]] = llvm.load %[[P]] : !llvm.ptr -> f32
// CHECK: %[[S:.*]] = llvm.intr.sqrt(%[[X]]) : (f32) -> f32
// CHECK: %[[E:.*]] = llvm.call @erff(%[[S]]) : (f32) -> f32
// CHECK: omp.parallel
// CHECK: omp.wsloop
// CHECK: omp.loop_nest (%[[J:.*]]) : i64
// CHECK: llvm.store %[[E]], %{{.*}} : f32, !llvm.ptr
// CHECK: llvm.cond_br
// CHECK: llvm.return %[[E]] : f32
// CHECK-NOT: memref.
// CHECK-NOT: func.
// CHECK-NOT: arith.
// CHECK-NOT: math.
// CHECK-NOT: cf.
func.func @host(%m: memref<4xf32>, %i: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %x = memref.load %m[%i] : memref<4xf32>
  %s = math.sqrt %x : f32
  %e = math.erf %s : f32
  omp.parallel {
    omp.wsloop {
      omp.loop_nest (%j) : index = (%c0) to (%c4) step (%c1) {
        memref.store %e, %m[%j] : memref<4xf32>
        omp.yield
      }
    }
    omp.terminator
  }
  %pos = arith.cmpf ogt, %e, %x : f32
  cf.cond_br %pos, ^a, ^b
^a:
  return %e : f32
^b:
  return %x : f32
}
