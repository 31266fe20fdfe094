// REQUIRES: rocm
// RUN: moir-opt %s -moir-gpu-device-lowering="target=amd chip=gfx942" | FileCheck %s
// RUN: moir-opt %s -moir-gpu-device-lowering="target=amd chip=gfx1100 serialize=assembly" \
// RUN:   | FileCheck %s --check-prefix=ISA

// The AMD side of the shared GPU lowering: the chip is an IR attribute (code
// object v5 by default, wave64 on gfx9, wave32 on gfx11), kernels lower to
// ROCDL, shuffles become cross-lane permutes.
// CHECK: gpu.module @moir_kernels [#rocdl.target<O = 3, chip = "gfx942", abi = "500">]
// CHECK: llvm.func @k
// CHECK-SAME: rocdl.kernel
// CHECK: llvm.intr.exp
// CHECK: rocdl.ds_bpermute
// ISA: gpu.binary @moir_kernels
// ISA-SAME: .amdgcn_target \22amdgcn-amd-amdhsa--gfx1100\22
// ISA-SAME: .amdhsa_wavefront_size32 1
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
