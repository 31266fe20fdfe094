// REQUIRES: cuda
// RUN: moir-opt %s -moir-gpu-device-lowering="target=nvidia chip=sm_90" | FileCheck %s
// RUN: moir-opt %s -moir-gpu-device-lowering="target=nvidia chip=sm_80 serialize=assembly" \
// RUN:   | FileCheck %s --check-prefix=PTX --implicit-check-not=".extern .func"

// The NVIDIA side of the shared GPU lowering: the chip is an IR attribute,
// kernels lower to NVVM (warp shuffles, libdevice math), and serialization
// links libdevice from the toolkit (no unresolved __nv_* externs in the PTX).
// CHECK: gpu.module @moir_kernels [#nvvm.target<O = 3, chip = "sm_90", features = "+ptx80">]
// CHECK: llvm.func @__nv_expf
// CHECK: llvm.func @k
// CHECK-SAME: nvvm.kernel
// CHECK: nvvm.shfl.sync  bfly
// PTX: gpu.binary @moir_kernels
// PTX-SAME: .target sm_80
// PTX-SAME: .visible .entry k(
// PTX-SAME: ex2.approx
// PTX-SAME: shfl.sync.bfly.b32
module attributes {gpu.container_module} {
  gpu.module @moir_kernels {
    gpu.func @k(%a: memref<?xf32>) kernel {
      %tid = gpu.thread_id x
      %v = memref.load %a[%tid] : memref<?xf32>
      %e = math.exp %v : f32
      %c16 = arith.constant 16 : i32
      %c32 = arith.constant 32 : i32
      %s, %ok = gpu.shuffle xor %e, %c16, %c32 : f32
      %r = arith.addf %e, %s : f32
      memref.store %r, %a[%tid] : memref<?xf32>
      gpu.return
    }
  }
}
