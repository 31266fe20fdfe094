// RUN: moir-opt %s -moir-cpu-approximate-math | FileCheck %s

// f32 exp becomes inline arithmetic (no libm call); other math ops stay.
// CHECK-LABEL: func.func @f
// CHECK-NOT: math.exp
// CHECK: math.fma
// CHECK: arith.bitcast {{.*}} : i32 to f32
// CHECK: math.sin
func.func @f(%x: f32) -> (f32, f32) {
  %e = math.exp %x : f32
  %s = math.sin %x : f32
  return %e, %s : f32, f32
}
