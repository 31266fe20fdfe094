// RUN: moir-opt %s -moir-cpu-parallelize | FileCheck %s

// A linalg op marked moir.parallel gets parallel loops over its parallel
// dimensions (the reduction stays a sequential loop); unmarked ops stay.
// CHECK-LABEL: func.func @f
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) = (%{{.*}}, %{{.*}}) to (%{{.*}}, %{{.*}})
// CHECK: scf.for
// CHECK: linalg.generic
// CHECK-NOT: moir.parallel
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
#id = affine_map<(m, n) -> (m, n)>
func.func @f(%x: memref<?x64xf32>, %w: memref<32x64xf32>, %y: memref<?x32xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<32x64xf32>) outs(%y : memref<?x32xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %p, %c : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel"]} outs(%y : memref<?x32xf32>) {
  ^bb0(%c: f32):
    %n = arith.negf %c : f32
    linalg.yield %n : f32
  }
  return
}
