// RUN: moir-opt %s -split-input-file -moir-gpu-tensor-cores | FileCheck %s
// RUN: moir-opt %s -split-input-file -moir-gpu-tensor-cores="unit=mfma warp-size=64" | FileCheck %s --check-prefix=MFMA
// RUN: not moir-opt %s -split-input-file -moir-gpu-tensor-cores="unit=mfma" 2>&1 | FileCheck %s --check-prefix=WARP
// RUN: not moir-opt %s -split-input-file -moir-gpu-tensor-cores="unit=wmma" 2>&1 | FileCheck %s --check-prefix=UNIT
// RUN: moir-opt %s -split-input-file -moir-gpu-tensor-cores="min-rows=1" | FileCheck %s --check-prefix=ROWS1
// RUN: not moir-opt %s -split-input-file -moir-gpu-tensor-cores="min-rows=0" 2>&1 | FileCheck %s --check-prefix=ROWS0

// WARP: mfma needs a warp of 64 lanes
// UNIT: unknown unit 'wmma' (mma-sync or mfma)
// ROWS0: min-rows must be at least 1

// A projection against bf16 weights over a dynamic number of tokens, after
// a zero fill: the rows go to the matrix units when there are at least 16
// (the others to the original generic on a slice, after its own fill), in
// 64x64 tiles of four warps staging 64x32 slices as bf16 in workgroup memory.
// CHECK-LABEL: func.func @projection
// CHECK: %[[MANY:.*]] = arith.cmpi sge, %[[T:.*]], %c16
// CHECK: %[[ROWS:.*]] = arith.select %[[MANY]], %[[T]], %c0
// CHECK: %[[FEW:.*]] = arith.subi %[[T]], %[[ROWS]]
// CHECK: %[[X:.*]] = memref.subview %{{.*}}[0, 0] [%[[FEW]], 1024] [1, 1]
// CHECK: %[[Y:.*]] = memref.subview %{{.*}}[0, 0] [%[[FEW]], 2816] [1, 1]
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[Y]]
// CHECK: linalg.generic {{.*}} ins(%[[X]], %{{.*}} : memref<?x1024xf32, strided<[1024, 1]>>, memref<2816x1024xbf16>) outs(%[[Y]]
// CHECK: gpu.launch blocks({{.*}}) in ({{.*}} = %{{.*}}, {{.*}} = %{{.*}}, {{.*}} = %c1{{.*}}) threads({{.*}}) in ({{.*}} = %c128{{.*}}, {{.*}} = %c1{{.*}}, {{.*}} = %c1{{.*}}) workgroup(%[[TA:.*]] : memref<64x40xbf16, #gpu.address_space<workgroup>>, %[[TB:.*]] : memref<64x40xbf16, #gpu.address_space<workgroup>>)
// The first depth slice is read before the loop, 16 elements of each side per
// thread, all loads before any store.
// CHECK-COUNT-16: memref.load {{.*}} : memref<?x1024xf32>
// CHECK-COUNT-16: memref.load {{.*}} : memref<2816x1024xbf16>
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c1024{{.*}} step %c32{{.*}} iter_args({{.*}}) -> (vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, vector<2x2xf32>, bf16,
// Each step stores the slice it carries, then reads the next one (the last
// step its own again: 1024 - 32) while the matrix units work.
// CHECK-COUNT-16: memref.store {{.*}}, %[[TA]]
// CHECK-COUNT-16: memref.store {{.*}}, %[[TB]]
// CHECK: gpu.barrier
// CHECK: arith.minui %{{.*}}, %c992
// CHECK: memref.load {{.*}} : memref<?x1024xf32>
// CHECK: arith.truncf {{.*}} : f32 to bf16
// CHECK-COUNT-15: memref.load {{.*}} : memref<?x1024xf32>
// CHECK: memref.load {{.*}} : memref<2816x1024xbf16>
// CHECK: arith.extf
// CHECK-COUNT-15: memref.load {{.*}} : memref<2816x1024xbf16>
// CHECK-NOT: gpu.barrier
// CHECK: vector.from_elements {{.*}} : vector<4x2xbf16>
// CHECK: vector.from_elements {{.*}} : vector<2x2xbf16>
// CHECK-COUNT-8: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
// CHECK: gpu.barrier
// CHECK: scf.yield
// CHECK: vector.extract {{.*}}[0, 0] : f32 from vector<2x2xf32>
// CHECK: scf.if
// The fill's constant, not a read of the output.
// CHECK-NOT: memref.load
// CHECK: memref.store {{.*}} : memref<?x2816xf32>
// CHECK: gpu.terminator
// CHECK-NOT: linalg.fill
// CHECK: return

// On AMD: four waves of 64 lanes, each a 2x2 of 16x16x16 MFMAs.
// MFMA-LABEL: func.func @projection
// MFMA: gpu.launch {{.*}} threads({{.*}}) in ({{.*}} = %c256
// MFMA: vector.from_elements {{.*}} : vector<4xbf16>
// MFMA-COUNT-4: amdgpu.mfma 16x16x16 {{.*}} blgp = none : vector<4xbf16>, vector<4xbf16>, vector<4xf32>
// MFMA: vector.extract {{.*}}[3] : f32 from vector<4xf32>
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @projection(%x: memref<?x1024xf32>, %w: memref<2816x1024xbf16>, %y: memref<?x2816xf32>) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%y : memref<?x2816xf32>)
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

// Int8 codes with a scale per row and block of 32 (Q8_0's form): the
// dequantization is the weight side's computation, staged once per element
// and block. A depth of 80 is not a multiple of the staging depth (32): the
// last slice reads clamped depths and zeros them. Without a fill the output's
// value is read and added.
// CHECK-LABEL: func.func @dequantized
// CHECK: gpu.launch
// CHECK: %[[IN:.*]] = arith.cmpi ult, %{{.*}}, %c80
// CHECK: arith.minui %{{.*}}, %c79
// CHECK: memref.load {{.*}} : memref<64x80xi8>
// CHECK: memref.load {{.*}} : memref<64x3xf16>
// CHECK: arith.sitofp
// CHECK: arith.extf
// CHECK: arith.mulf
// CHECK: arith.select %[[IN]]
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c96{{.*}} step %c32
// CHECK: arith.minui %{{.*}}, %c64
// CHECK: arith.cmpi ult, %{{.*}}, %c80
// CHECK: nvgpu.mma.sync
// CHECK: memref.load {{.*}} : memref<?x64xf32>
// CHECK: arith.addf
// CHECK: memref.store
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#ns = affine_map<(m, n, k) -> (n, k floordiv 32)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @dequantized(%x: memref<?x80xf32>, %q: memref<64x80xi8>, %s: memref<64x3xf16>, %y: memref<?x64xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #ns, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %q, %s : memref<?x80xf32>, memref<64x80xi8>, memref<64x3xf16>) outs(%y : memref<?x64xf32>) {
  ^bb0(%a: f32, %c: i8, %sc: f16, %acc: f32):
    %cf = arith.sitofp %c : i8 to f32
    %se = arith.extf %sc : f16 to f32
    %w = arith.mulf %cf, %se : f32
    %p = arith.mulf %a, %w : f32
    %r = arith.addf %acc, %p : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// Left alone: a product of two f32 operands (the router keeps f32), a
// static single row (decode), and a reduction that is not a product.
// CHECK-LABEL: func.func @untouched
// CHECK-NOT: gpu.launch
// CHECK-COUNT-3: linalg.generic
// CHECK-NOT: gpu.launch
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @untouched(%x: memref<?x64xf32>, %r: memref<8x64xf32>, %y: memref<?x8xf32>,
                     %x1: memref<1x64xf32>, %w: memref<32x64xbf16>, %y1: memref<1x32xf32>,
                     %z: memref<?x32xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %r : memref<?x64xf32>, memref<8x64xf32>) outs(%y : memref<?x8xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x1, %w : memref<1x64xf32>, memref<32x64xbf16>) outs(%y1 : memref<1x32xf32>) {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %e = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %e : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<32x64xbf16>) outs(%z : memref<?x32xf32>) {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %e = arith.extf %b : bf16 to f32
    %p = arith.addf %a, %e : f32
    %s = arith.maximumf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// min-rows=1: every row count takes the matrix units, no warp-form slice.
// CHECK-LABEL: func.func @all_rows
// ROWS1-LABEL: func.func @all_rows
// ROWS1-NOT: memref.subview
// ROWS1-NOT: linalg.generic
// ROWS1: gpu.launch
// ROWS1: nvgpu.mma.sync
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @all_rows(%x: memref<?x64xf32>, %w: memref<32x64xbf16>, %y: memref<?x32xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<32x64xbf16>) outs(%y : memref<?x32xf32>) {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %e = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %e : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}
