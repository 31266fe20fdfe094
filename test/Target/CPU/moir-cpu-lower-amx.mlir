// RUN: moir-opt %s -moir-cpu-lower-amx | FileCheck %s

// The tile ops become calls of LLVM's tile intrinsics on !llvm.x86_amx
// values, and the loop that carries the accumulator carries those values:
// a block argument of !amx.tile type would be left for conversions that
// cannot convert it once the loop is branches. Everything else stays: the
// memref and index operands reach the intrinsics through casts the final
// conversions reconcile.
// CHECK-LABEL: func.func @accumulate
// CHECK: %[[ZERO:.*]] = llvm.call_intrinsic "llvm.x86.tilezero.internal"({{.*}}) : (i16, i16) -> !llvm.x86_amx
// The loop keeps its index bounds (only tile types are converted).
// CHECK: %[[SUMS:.*]] = scf.for %{{.*}} = %c0 to %c2 step %c1 iter_args(%[[ACC:.*]] = %[[ZERO]]) -> (!llvm.x86_amx) {
// CHECK: %[[W:.*]] = llvm.call_intrinsic "llvm.x86.tileloadd64.internal"({{.*}}) : (i16, i16, !llvm.ptr, i64) -> !llvm.x86_amx
// CHECK: %[[X:.*]] = llvm.call_intrinsic "llvm.x86.tileloadd64.internal"({{.*}}) : (i16, i16, !llvm.ptr, i64) -> !llvm.x86_amx
// CHECK: %[[P:.*]] = llvm.call_intrinsic "llvm.x86.tdpbf16ps.internal"({{.*}}, %[[ACC]], %[[W]], %[[X]]) : (i16, i16, i16, !llvm.x86_amx, !llvm.x86_amx, !llvm.x86_amx) -> !llvm.x86_amx
// CHECK: scf.yield %[[P]] : !llvm.x86_amx
// CHECK: llvm.call_intrinsic "llvm.x86.tilestored64.internal"({{.*}}, %[[SUMS]])
// CHECK-NOT: amx.
// Other ops are not touched.
// CHECK: vector.load %arg2
func.func @accumulate(%w: memref<16x64xbf16>, %x: memref<?xi32>, %c: memref<256xf32>) -> vector<16xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c16 = arith.constant 16 : index
  %c32 = arith.constant 32 : index
  %c256 = arith.constant 256 : index
  %zero = amx.tile_zero : !amx.tile<16x16xf32>
  %sums = scf.for %step = %c0 to %c2 step %c1 iter_args(%acc = %zero) -> (!amx.tile<16x16xf32>) {
    %k = arith.muli %step, %c32 : index
    %wt = amx.tile_load %w[%c0, %k] : memref<16x64xbf16> into !amx.tile<16x32xbf16>
    %off = arith.muli %step, %c256 : index
    %xt = amx.tile_load %x[%off], %c16 : memref<?xi32> into !amx.tile<16x32xbf16>
    %p = amx.tile_mulf %wt, %xt, %acc : !amx.tile<16x32xbf16>, !amx.tile<16x32xbf16>, !amx.tile<16x16xf32>
    scf.yield %p : !amx.tile<16x16xf32>
  }
  amx.tile_store %c[%c0], %sums, %c16 : memref<256xf32>, !amx.tile<16x16xf32>
  %row = vector.load %c[%c0] : memref<256xf32>, vector<16xf32>
  return %row : vector<16xf32>
}
