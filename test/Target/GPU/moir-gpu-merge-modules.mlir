// RUN: moir-opt %s -moir-gpu-merge-modules | FileCheck %s

// Two outlined modules (each kernel named like the other) become one; each
// kernel takes its module's name, the shared constant is kept once and the
// launches point into the merged module.
// CHECK: gpu.module @moir_kernels
// CHECK-DAG: memref.global "private" constant @table
// CHECK-DAG: gpu.func @f_kernel(
// CHECK-DAG: gpu.func @f_kernel_0(
// CHECK-NOT: gpu.module
// CHECK: gpu.launch_func  @moir_kernels::@f_kernel blocks
// CHECK: gpu.launch_func  @moir_kernels::@f_kernel_0 blocks
module attributes {gpu.container_module} {
  gpu.module @f_kernel {
    memref.global "private" constant @table : memref<1xf32> = dense<1.0>
    gpu.func @f_kernel() kernel {
      %t = memref.get_global @table : memref<1xf32>
      gpu.return
    }
  }
  gpu.module @f_kernel_0 {
    memref.global "private" constant @table : memref<1xf32> = dense<1.0>
    gpu.func @f_kernel() kernel {
      gpu.return
    }
  }
  func.func @f() {
    %c1 = arith.constant 1 : index
    gpu.launch_func @f_kernel::@f_kernel blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    gpu.launch_func @f_kernel_0::@f_kernel blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    return
  }
}
