// RUN: moir-opt %s -moir-expand-fp8 -split-input-file | FileCheck %s --implicit-check-not=arith.truncf\ %{{.*}}\ :\ {{.*}}f8E4M3FN --implicit-check-not=f8E4M3FN\ to\ f32

// FP8 E4M3 writes and reads as integer operations on the bits, for vectors
// (the attention kernels' loads) and scalars (the cache update's loops).
// The rounding (nearest even, subnormals, saturation at 448) was checked
// against the format's value table on 14k values; the e2e fixture tests
// check the compiled codec end to end.
// CHECK-LABEL: func.func @codec
// CHECK-SAME: (%[[X:.*]]: vector<16xf32>, %[[S:.*]]: f32, %[[B:.*]]: f8E4M3FN)
// Encode: sign, |x| saturated at 448, mantissa rounded to 3 bits (bias
// 0x7FFFF + the kept lsb), rebias by 120 << 3; subnormals as multiples of
// 2^-9 rounded by adding and removing 2^23.
// CHECK: %[[BITS:.*]] = arith.bitcast %[[X]] : vector<16xf32> to vector<16xi32>
// CHECK: arith.minimumf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: arith.subi %{{.*}}, %{{.*}} : vector<16xi32>
// CHECK: arith.cmpf olt
// CHECK: arith.select
// CHECK: %[[BYTE:.*]] = arith.trunci %{{.*}} : vector<16xi32> to vector<16xi8>
// CHECK: %[[Q:.*]] = arith.bitcast %[[BYTE]] : vector<16xi8> to vector<16xf8E4M3FN>
// Decode: the fields moved into an f16's (the value times 2^-8, subnormals
// included), a hardware f16 -> f32 conversion, times 256.
// CHECK: %[[RAW:.*]] = arith.bitcast %[[Q]] : vector<16xf8E4M3FN> to vector<16xi8>
// CHECK: arith.extui %[[RAW]] : vector<16xi8> to vector<16xi16>
// CHECK: %[[H:.*]] = arith.bitcast %{{.*}} : vector<16xi16> to vector<16xf16>
// CHECK: %[[W:.*]] = arith.extf %[[H]] : vector<16xf16> to vector<16xf32>
// CHECK: %[[F:.*]] = arith.mulf %[[W]], %{{.*}} : vector<16xf32>
// Scalars the same way.
// CHECK: arith.bitcast %[[S]] : f32 to i32
// CHECK: arith.trunci %{{.*}} : i32 to i8
// CHECK: arith.bitcast %[[B]] : f8E4M3FN to i8
// CHECK: return %[[F]]
func.func @codec(%x: vector<16xf32>, %s: f32, %b: f8E4M3FN) -> (vector<16xf32>, f8E4M3FN, f32) {
  %q = arith.truncf %x : vector<16xf32> to vector<16xf8E4M3FN>
  %f = arith.extf %q : vector<16xf8E4M3FN> to vector<16xf32>
  %qs = arith.truncf %s : f32 to f8E4M3FN
  %fb = arith.extf %b : f8E4M3FN to f32
  return %f, %qs, %fb : vector<16xf32>, f8E4M3FN, f32
}

// -----

// bf16 -> f32 as a 16-bit shift into the f32's upper half (exact), vectors
// and scalars: LLVM never sees a bfloat conversion (on x86 without
// AVX512-BF16 it called compiler-rt's __truncsfbf2 for them).
// CHECK-LABEL: func.func @bf16
// CHECK-SAME: (%[[V:.*]]: vector<16xbf16>, %[[X:.*]]: bf16)
// CHECK: %[[VI:.*]] = arith.bitcast %[[V]] : vector<16xbf16> to vector<16xi16>
// CHECK: %[[VW:.*]] = arith.extui %[[VI]] : vector<16xi16> to vector<16xi32>
// CHECK: %[[V16:.*]] = arith.constant dense<16> : vector<16xi32>
// CHECK: %[[VS:.*]] = arith.shli %[[VW]], %[[V16]] : vector<16xi32>
// CHECK: %[[VF:.*]] = arith.bitcast %[[VS]] : vector<16xi32> to vector<16xf32>
// CHECK: %[[XI:.*]] = arith.bitcast %[[X]] : bf16 to i16
// CHECK: %[[XW:.*]] = arith.extui %[[XI]] : i16 to i32
// CHECK: %[[C16:.*]] = arith.constant 16 : i32
// CHECK: %[[XS:.*]] = arith.shli %[[XW]], %[[C16]] : i32
// CHECK: %[[XF:.*]] = arith.bitcast %[[XS]] : i32 to f32
// CHECK: return %[[VF]], %[[XF]]
func.func @bf16(%v: vector<16xbf16>, %x: bf16) -> (vector<16xf32>, f32) {
  %fv = arith.extf %v : vector<16xbf16> to vector<16xf32>
  %fx = arith.extf %x : bf16 to f32
  return %fv, %fx : vector<16xf32>, f32
}

// -----

// Other conversions are left alone.
// CHECK-LABEL: func.func @others
// CHECK: arith.extf %{{.*}} : f16 to f32
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @others(%x: f16, %y: f32) -> (f32, bf16) {
  %f = arith.extf %x : f16 to f32
  %t = arith.truncf %y : f32 to bf16
  return %f, %t : f32, bf16
}
