// RUN: moir-opt %s -moir-gpu-configure-lowering | FileCheck %s
// RUN: moir-opt %s -moir-gpu-configure-lowering -moir-lower-to-linalg | FileCheck %s --check-prefix=LOWERED

// The GPUs' lowering configuration: nothing for a thread pool (the kernels
// map every loop), so the lowering marks no op moir.parallel.
// CHECK: module attributes {moir.lowering_config = #moir.lowering_config<parallel = false, work_items = 1, min_split_keys = 256, key_block = 64, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 1>}
// LOWERED: linalg.generic
// LOWERED-NOT: moir.parallel
module {
  func.func @f(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>) -> tensor<?x32xf32> {
    %y = llm.linear %x, %w : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
