// RUN: moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true int8-decode=none int8-decode-bits=16" | FileCheck %s
// RUN: moir-opt %s -moir-cpu-contraction-kernels="int8-dot=false" | FileCheck %s --check-prefix=F32

// moir-cpu-contraction-kernels with moir.row_quant (W8A8 int8 rows, handed
// over raw): each row's scale is its largest magnitude over the whole depth
// / 127.5 (f32's epsilon for zeros), its codes x / scale (a division),
// clamped to [-128, 127] and rounded to nearest even. Prefill's tiles and
// decode's row kernel both take them (int8-decode=none notwithstanding),
// without residual codes (int8-decode-bits=16 notwithstanding). Without
// int8 dot products, the f32 kernel multiplies the rows' quantized values
// from a scratch copy.
// CHECK-LABEL: func.func @row_quant
// CHECK: math.absf {{.*}} : vector<16xf32>
// CHECK: vector.reduction <maxnumf>
// CHECK: arith.constant 1.275000e+02 : f32
// CHECK: arith.divf {{.*}} : f32
// CHECK: arith.constant 1.1920929E-7 : f32
// CHECK: arith.divf {{.*}} : vector<16xf32>
// CHECK-NEXT: arith.constant dense<-1.280000e+02> : vector<16xf32>
// CHECK-NEXT: arith.maximumf
// CHECK-NEXT: arith.constant dense<1.270000e+02> : vector<16xf32>
// CHECK-NEXT: arith.minimumf
// CHECK-NEXT: math.roundeven {{.*}} : vector<16xf32>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// CHECK: } else {
// CHECK: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi8>
// CHECK-NOT: memref<?xi8>
// CHECK: arith.constant 1.275000e+02 : f32
// CHECK: math.roundeven {{.*}} : vector<16xf32>
// CHECK-NOT: arith.constant dense<1.280000e+02>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd
// CHECK: return
// F32-LABEL: func.func @row_quant
// F32-NOT: vpdpbusd
// F32: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?x?xf32>
// F32: arith.divf {{.*}} : f32
// F32: arith.divf {{.*}} : f32
// F32: math.roundeven {{.*}} : f32
// F32: vector.load %alloc
// F32: memref.dealloc %alloc
// F32: return
#a = affine_map<(m, n, k) -> (m, k)>
#code = affine_map<(m, n, k) -> (n, k)>
#scale = affine_map<(m, n, k) -> (n, k floordiv 32, 0)>
#c = affine_map<(m, n, k) -> (m, n)>
func.func @row_quant(%x: memref<?x64xf32>, %d: memref<32x64xi8>, %s: memref<32x2x1xf16>, %y: memref<?x32xf32>) {
  linalg.generic {indexing_maps = [#a, #code, #scale, #c],
                  iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %d, %s : memref<?x64xf32>, memref<32x64xi8>, memref<32x2x1xf16>)
      outs(%y : memref<?x32xf32>) attrs = {moir.packed = "i8:32", moir.parallel, moir.row_quant} {
  ^bb0(%in: f32, %code: i8, %sc: f16, %acc: f32):
    %v = arith.sitofp %code : i8 to f32
    %s32 = arith.extf %sc : f16 to f32
    %w = arith.mulf %s32, %v : f32
    %p = arith.mulf %in, %w : f32
    %sum = arith.addf %acc, %p : f32
    linalg.yield %sum : f32
  }
  return
}
