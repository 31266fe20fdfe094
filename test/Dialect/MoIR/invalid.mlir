// RUN: moir-opt %s -split-input-file -verify-diagnostics

// An attribute the dialect does not declare.
// expected-error @+1 {{unknown MoIR attribute 'moir.layers'}}
func.func private @f() attributes {moir.layers = 1 : i64}

// -----

// A declared attribute of the wrong type.
// expected-error @+1 {{attribute 'moir.layer' must be an i64 integer, got "1"}}
func.func private @f() attributes {moir.layer = "1"}

// -----

// expected-error @+1 {{'moir.layer' must not be negative}}
func.func private @f() attributes {moir.layer = -1 : i64}

// -----

// expected-error @+1 {{attribute 'moir.parallel' must be a unit attribute}}
func.func private @f() attributes {moir.parallel = true}

// -----

// expected-error @+1 {{'moir.lowering_config' belongs on the module}}
func.func private @f() attributes {moir.lowering_config = #moir.lowering_config<parallel = true, work_items = 32, min_split_keys = 256, key_block = 64, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 16>}

// -----

// expected-error @+1 {{#moir.lowering_config: key_block must be positive, got 0}}
module attributes {moir.lowering_config = #moir.lowering_config<parallel = true, work_items = 32, min_split_keys = 256, key_block = 0, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 16>} {}

// -----

// expected-error @+1 {{#moir.lowering_config: decode_ffn_block must not be negative (0: ffn_block), got -64}}
module attributes {moir.lowering_config = #moir.lowering_config<parallel = true, work_items = 32, min_split_keys = 256, key_block = 64, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 16, decode_ffn_block = -64>} {}

// -----

// expected-error @+1 {{'moir.arg' belongs on arguments of @forward}}
func.func private @f() attributes {moir.arg = #moir.arg<tokens>}

// -----

// expected-error @+1 {{'moir.arg' must be a #moir.arg, got 1 : i64}}
func.func private @f(%x: index {moir.arg = 1 : i64})

// -----

// expected-error @+1 {{#moir.arg: weights, and only weights, carry their names}}
func.func private @f(%x: index {moir.arg = #moir.arg<weight>})

// -----

// expected-error @+1 {{#moir.arg: weights, and only weights, carry their names}}
func.func private @f(%x: index {moir.arg = #moir.arg<cache, ["w"]>})

// -----

// expected-error @+1 {{unknown MoIR argument attribute 'moir.weight'}}
func.func private @f(%x: index {moir.weight})

// -----

// Only OpenCL and Vulkan keep KV caches on the device this way.
func.func @sync_metal(%c: tensor<16x2x8xf32>, %o: index, %n: index) -> tensor<16x2x8xf32> {
  // expected-error @+1 {{device 'metal': only OpenCL and Vulkan keep KV caches on the device}}
  %r = moir.halide_sync_rows %c[%o, %n] on "metal" : tensor<16x2x8xf32>
  return %r : tensor<16x2x8xf32>
}

// -----

// Vulkan only where the cache's bytes are a multiple of 64 (16x2x3 f32: 384
// bytes are; 5x3 f32: 60 are not).
func.func @sync_vulkan_odd(%c: tensor<5x3xf32>, %o: index, %n: index) -> tensor<5x3xf32> {
  // expected-error @+1 {{cache 'tensor<5x3xf32>' of 60 bytes: Vulkan keeps only caches whose size is a multiple of 64 bytes}}
  %r = moir.halide_sync_rows %c[%o, %n] on "vulkan" : tensor<5x3xf32>
  return %r : tensor<5x3xf32>
}

// -----

func.func @sync_dynamic(%c: tensor<?x2x8xf32>, %o: index, %n: index) -> tensor<?x2x8xf32> {
  // expected-error @+1 {{cache 'tensor<?x2x8xf32>' must be static, of rank 1 to 4}}
  %r = moir.halide_sync_rows %c[%o, %n] on "opencl" : tensor<?x2x8xf32>
  return %r : tensor<?x2x8xf32>
}
