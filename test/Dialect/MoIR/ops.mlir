// RUN: moir-opt %s | moir-opt | FileCheck %s

// Every contract attribute round-trips: the module's family, source and
// lowering configuration, the entry arguments' kinds, a layer and the
// lowering's markers.
// CHECK: module attributes {moir.family = "LlamaForCausalLM", moir.lowering_config = #moir.lowering_config<parallel = true, work_items = 32, min_split_keys = 256, key_block = 64, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 16>, moir.source = "model"}
// CHECK: func.func @forward(%{{.*}}: tensor<?xi32> {moir.arg = #moir.arg<tokens>}, %{{.*}}: tensor<?xi64> {moir.arg = #moir.arg<positions>}, %{{.*}}: index {moir.arg = #moir.arg<offset>}, %{{.*}}: tensor<8x4xi8> {moir.arg = #moir.arg<cache>}, %{{.*}}: tensor<8xf32> {moir.arg = #moir.arg<cache_scales>}, %{{.*}}: tensor<4x4xf32> {moir.arg = #moir.arg<weight, ["w"]>})
// CHECK: arith.addf {{.*}} {moir.layer = 3 : i64}
// CHECK: arith.mulf {{.*}} {moir.kernel, moir.parallel, moir.precise}
// CHECK: func.func private @g() attributes {moir.abi = array<i64: 1, -1>, moir.host_copy, moir.serial, moir.warp_reduce}
module attributes {moir.family = "LlamaForCausalLM", moir.source = "model",
    moir.lowering_config = #moir.lowering_config<parallel = true, work_items = 32, min_split_keys = 256,
                           key_block = 64, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 16>} {
  func.func @forward(%t: tensor<?xi32> {moir.arg = #moir.arg<tokens>},
                     %p: tensor<?xi64> {moir.arg = #moir.arg<positions>},
                     %o: index {moir.arg = #moir.arg<offset>},
                     %c: tensor<8x4xi8> {moir.arg = #moir.arg<cache>},
                     %s: tensor<8xf32> {moir.arg = #moir.arg<cache_scales>},
                     %w: tensor<4x4xf32> {moir.arg = #moir.arg<weight, ["w"]>}) -> tensor<4x4xf32> {
    %a = arith.addf %w, %w {moir.layer = 3 : i64} : tensor<4x4xf32>
    %m = arith.mulf %a, %a {moir.parallel, moir.kernel, moir.precise} : tensor<4x4xf32>
    return %m : tensor<4x4xf32>
  }
  func.func private @g() attributes {moir.abi = array<i64: 1, -1>, moir.serial, moir.warp_reduce, moir.host_copy}
}

// moir.halide_sync_rows round-trips.
// CHECK-LABEL: func.func @sync_rows
// CHECK: moir.halide_sync_rows %arg0[%arg1, %arg2] on "opencl" : tensor<16x2x8xf32>
func.func @sync_rows(%c: tensor<16x2x8xf32>, %o: index, %n: index) -> tensor<16x2x8xf32> {
  %r = moir.halide_sync_rows %c[%o, %n] on "opencl" : tensor<16x2x8xf32>
  // CHECK: moir.halide_sync_rows %{{.*}} on "vulkan" : tensor<16x2x8xf32>
  %v = moir.halide_sync_rows %r[%o, %n] on "vulkan" : tensor<16x2x8xf32>
  return %v : tensor<16x2x8xf32>
}
