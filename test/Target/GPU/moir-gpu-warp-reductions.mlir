// RUN: moir-opt %s -split-input-file -moir-gpu-warp-reductions | FileCheck %s

// A matrix-vector product against a row-major weight: one warp per output.
// Lanes stride through k (four partials per lane, then a remainder loop), a
// shuffle butterfly combines them and lane 0 adds the initial value.
// CHECK-LABEL: func.func @matvec
// CHECK: scf.parallel ({{.*}}) = {{.*}} to (%{{.*}}, %c2816, %c32)
// CHECK: scf.for {{.*}} iter_args({{.*}}, {{.*}}, {{.*}}, {{.*}}) -> (f32, f32, f32, f32)
// CHECK: arith.extf
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c32
// CHECK: gpu.shuffle xor %{{.*}}, %c16_i32, %c32_i32 : f32
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32, %c32_i32{{.*}} : f32
// CHECK: scf.if
// CHECK: memref.load {{.*}} : memref<?x2816xf32>
// CHECK: memref.store {{.*}} : memref<?x2816xf32>
// CHECK: } {moir.warp_reduce}
// CHECK-NOT: linalg.generic
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @matvec(%x: memref<?x1024xf32>, %w: memref<2816x1024xbf16>, %y: memref<?x2816xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x1024xf32>, memref<2816x1024xbf16>) outs(%y : memref<?x2816xf32>) {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %e = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %e : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// A maximum reduction (softmax) starts from -inf.
// CHECK-LABEL: func.func @rowmax
// CHECK: arith.constant 0xFF800000 : f32
// CHECK: gpu.shuffle xor
// CHECK: arith.maximumf
// CHECK: } {moir.warp_reduce}
func.func @rowmax(%x: memref<?x?xf32>, %y: memref<?xf32>) {
  linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]}
      ins(%x : memref<?x?xf32>) outs(%y : memref<?xf32>) {
  ^bb0(%a: f32, %m: f32):
    %r = arith.maximumf %a, %m : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// A reduction between parallel dimensions (attention's weighted sum in the
// CPU's order) gets its parallel dimensions first; a short static reduction
// (5 experts) stays thread-per-output.
// CHECK-LABEL: func.func @reorder
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK-NOT: moir.warp_reduce
func.func @reorder(%p: memref<?x6x5xf32>, %v: memref<5x2x12xf32>, %o: memref<?x6x12xf32>) {
  linalg.generic {indexing_maps = [affine_map<(t, h, s, d) -> (t, h, s)>, affine_map<(t, h, s, d) -> (s, h floordiv 3, d)>, affine_map<(t, h, s, d) -> (t, h, d)>],
                  iterator_types = ["parallel", "parallel", "reduction", "parallel"]}
      ins(%p, %v : memref<?x6x5xf32>, memref<5x2x12xf32>) outs(%o : memref<?x6x12xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %m, %c : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// A fill of the output right before the reduction folds into it: lane 0
// starts from the constant and nothing reads the buffer back.
// CHECK-LABEL: func.func @filled
// CHECK-NOT: linalg.fill
// CHECK: gpu.shuffle xor
// CHECK: scf.if
// CHECK-NOT: memref.load {{.*}} : memref<?x64xf32>
// CHECK: arith.addf %cst
// CHECK-NEXT: memref.store {{.*}} : memref<?x64xf32>
func.func @filled(%x: memref<?x128xf32>, %w: memref<64x128xf32>, %y: memref<?x64xf32>) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%y : memref<?x64xf32>)
  linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x128xf32>, memref<64x128xf32>) outs(%y : memref<?x64xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}
