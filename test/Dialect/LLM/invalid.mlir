// RUN: moir-opt %s -split-input-file -verify-diagnostics

// RoPE without positive theta.
// expected-error @+1 {{rope theta must be positive}}
func.func private @f() attributes {r = #llm.rope<theta = 0.0, dim = 64>}

// -----

// Odd rotary dimension.
// expected-error @+1 {{rope dim must be positive and even, got 63}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 63>}

// -----

// Scaling parameters must not be silently ignored.
// expected-error @+1 {{rope scaling parameters given without a scaling type}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, factor = 2.0>}

// -----

// One frequency divisor per rotated pair.
// expected-error @+1 {{rope freq_factors needs dim / 2 = 4 values, got 3}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 8, freq_factors = [1.0, 2.0, 4.0]>}

// -----

// expected-error @+1 {{rope freq_factors must be positive and finite, got 0}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 4, freq_factors = [1.0, 0.0]>}

// -----

// expected-error @+1 {{rope scaling 'linear' needs a positive factor}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, scaling = linear>}

// -----

// expected-error @+1 {{linear rope scaling takes only a factor}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, scaling = linear, factor = 2.0, beta_fast = 32.0>}

// -----

// expected-error @+1 {{llama3 rope scaling needs low_freq_factor, high_freq_factor and original_max_position}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, scaling = llama3, factor = 8.0, low_freq_factor = 1.0>}

// -----

// expected-error @+1 {{llama3 rope scaling needs low_freq_factor < high_freq_factor}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, scaling = llama3, factor = 8.0, low_freq_factor = 4.0, high_freq_factor = 1.0, original_max_position = 8192>}

// -----

// expected-error @+1 {{llama3 rope scaling does not take yarn parameters}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, scaling = llama3, factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position = 8192, mscale = 1.0>}

// -----

// expected-error @+1 {{yarn rope scaling needs original_max_position}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, scaling = yarn, factor = 40.0>}

// -----

// expected-error @+1 {{yarn rope scaling does not take llama3 parameters}}
func.func private @f() attributes {r = #llm.rope<theta = 1.0e4, dim = 64, scaling = yarn, factor = 40.0, original_max_position = 4096, high_freq_factor = 4.0>}

// -----

// expected-error @+1 {{quantization scale type must be a float type}}
func.func private @f() attributes {q = #llm.quant<kind = per_tensor, scale = i8>}

// -----

// expected-error @+1 {{zero_point is only supported for group quantization}}
func.func private @f() attributes {q = #llm.quant<kind = per_tensor, zero_point = true>}

// -----

// expected-error @+1 {{'per_channel' quantization takes no block shape}}
func.func private @f() attributes {q = #llm.quant<kind = per_channel, axis = 0, block = [1, 128]>}

// -----

// expected-error @+1 {{'block' quantization takes no axis}}
func.func private @f() attributes {q = #llm.quant<kind = block, block = [128, 128], axis = 1>}

// -----

// expected-error @+1 {{'block' quantization takes no group size}}
func.func private @f() attributes {q = #llm.quant<kind = block, block = [128, 128], group = 32>}

// -----

// expected-error @+1 {{'group' quantization takes no GGUF format}}
func.func private @f() attributes {q = #llm.quant<kind = group, group = 32, format = q4_0>}

// -----

// expected-error @+1 {{per_channel quantization needs axis >= 0}}
func.func private @f() attributes {q = #llm.quant<kind = per_channel>}

// -----

// expected-error @+1 {{block quantization needs positive block sizes}}
func.func private @f() attributes {q = #llm.quant<kind = block, block = [128, 0]>}

// -----

// expected-error @+1 {{group quantization needs a positive group size}}
func.func private @f() attributes {q = #llm.quant<kind = group>}

// -----

// expected-error @+1 {{gguf quantization needs a format}}
func.func private @f() attributes {q = #llm.quant<kind = gguf>}

// -----

// expected-error @+1 {{gguf formats embed their scales; no scale type}}
func.func private @f() attributes {q = #llm.quant<kind = gguf, format = q8_0, scale = f16>}

// -----

// expected-error @+1 {{quantized tensor must have rank >= 1}}
func.func private @f(!llm.qtensor<i8, #llm.quant<kind = per_tensor>>)

// -----

// expected-error @+1 {{quantized tensor dimensions must be static and positive}}
func.func private @f(!llm.qtensor<0x4xi8, #llm.quant<kind = per_tensor>>)

// -----

// expected-error @+1 {{quantized storage type must be f8E4M3FN, f8E5M2, i8, i6, i5 or i4, got 'f16'}}
func.func private @f(!llm.qtensor<4x4xf16, #llm.quant<kind = per_tensor>>)

// -----

// expected-error @+1 {{'block' quantization needs 8-bit storage, got 'i4'}}
func.func private @f(!llm.qtensor<128x128xi4, #llm.quant<kind = block, block = [128, 128]>>)

// -----

// expected-error @+1 {{per_channel axis 2 out of range for rank 2}}
func.func private @f(!llm.qtensor<4x4xi8, #llm.quant<kind = per_channel, axis = 2>>)

// -----

// expected-error @+1 {{block quantization needs one block size per dimension: got 1 for rank 2}}
func.func private @f(!llm.qtensor<256x256xf8E4M3FN, #llm.quant<kind = block, block = [128]>>)

// -----

// expected-error @+1 {{group quantization needs i4 or i8 storage, got 'f8E4M3FN'}}
func.func private @f(!llm.qtensor<4x64xf8E4M3FN, #llm.quant<kind = group, group = 32>>)

// -----

// expected-error @+1 {{innermost dimension 48 is not a multiple of the group size 32}}
func.func private @f(!llm.qtensor<4x48xi4, #llm.quant<kind = group, group = 32>>)

// -----

// expected-error @+1 {{GGUF format q6_k stores i6 values, got 'i4'}}
func.func private @f(!llm.qtensor<4x256xi4, #llm.quant<kind = gguf, format = q6_k>>)

// -----

// expected-error @+1 {{innermost dimension 48 is not a multiple of the q8_0 block size 32}}
func.func private @f(!llm.qtensor<4x48xi8, #llm.quant<kind = gguf, format = q8_0>>)

// -----

func.func @f() {
  // expected-error @+1 {{weight name must not be empty}}
  %0 = llm.weight "" : tensor<4xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{weight must have a static shape}}
  %0 = llm.weight "w" : tensor<?x4xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{float weight takes no scale tensor}}
  %0 = llm.weight "w" scales "w_scale" : tensor<4x4xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{GGUF weight embeds its scales; no scale tensor}}
  %0 = llm.weight "w" scales "w_scale" : !llm.qtensor<4x32xi8, #llm.quant<kind = gguf, format = q8_0>>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{needs at least one weight name}}
  %0 = llm.stacked_weight [] : tensor<0x4xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{weight name must not be empty}}
  %0 = llm.stacked_weight ["a", ""] : tensor<2x4xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{weight 'a' is stacked twice}}
  %0 = llm.stacked_weight ["a", "a"] : tensor<2x4xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{stacked weight must have rank >= 2}}
  %0 = llm.stacked_weight ["a", "b"] : tensor<2xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{leading dimension 3 must equal the number of names (2)}}
  %0 = llm.stacked_weight ["a", "b"] : tensor<3x4xf32>
  return
}

// -----

func.func @f() {
  // expected-error @+1 {{needs one scale name per weight, got 1 for 2}}
  %0 = llm.stacked_weight ["a", "b"] scales ["a_s"] : !llm.qtensor<2x4x4xi8, #llm.quant<kind = per_channel, axis = 1>>
  return
}

// -----

func.func @f(%q: !llm.qtensor<4x4xi8, #llm.quant<kind = per_tensor>>) {
  // expected-error @+1 {{result shape must equal the quantized shape}}
  %0 = llm.dequantize %q : !llm.qtensor<4x4xi8, #llm.quant<kind = per_tensor>> -> tensor<4x8xf32>
  return
}

// -----

func.func @f(%ids: tensor<?x2xi32>, %t: tensor<10x8xf32>) {
  // expected-error @+1 {{ids must have rank 1}}
  %0 = llm.embedding %ids, %t : (tensor<?x2xi32>, tensor<10x8xf32>) -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%ids: tensor<?xi32>, %t: tensor<10x8xf32>) {
  // expected-error @+1 {{result hidden dimension is 16, expected 8}}
  %0 = llm.embedding %ids, %t : (tensor<?xi32>, tensor<10x8xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%ids: tensor<?xi32>, %t: tensor<10x8xf32>) {
  // expected-error @+1 {{scale must be finite and non-zero}}
  %0 = llm.embedding %ids, %t scale = 0.0 : (tensor<?xi32>, tensor<10x8xf32>) -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{offset must be finite}}
  %0 = llm.rms_norm %x, %w epsilon = 1.0e-5 offset = 0x7FF8000000000000 : tensor<?x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{epsilon must be positive}}
  %0 = llm.rms_norm %x, %w epsilon = 0.0 : tensor<?x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @f(%x: tensor<f32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{input must have rank >= 1}}
  %0 = llm.rms_norm %x, %w epsilon = 1.0e-5 : tensor<f32>, tensor<8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %w: tensor<6xf32>) {
  // expected-error @+1 {{weight size is 6, expected 8}}
  %0 = llm.rms_norm %x, %w epsilon = 1.0e-5 : tensor<?x8xf32>, tensor<6xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %w: tensor<4x6xf32>) {
  // expected-error @+1 {{weight in_features is 6, expected 8}}
  %0 = llm.linear %x, %w : (tensor<?x8xf32>, tensor<4x6xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{result features is 5, expected 4}}
  %0 = llm.linear %x, %w : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x5xf32>
  return
}

// -----

func.func @f(%x: tensor<3x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{result leading dimension is 2, expected 3}}
  %0 = llm.linear %x, %w : (tensor<3x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{bias size is 5, expected 4}}
  %0 = llm.linear %x, %w, %b : (tensor<?x8xf32>, tensor<4x8xf32>, tensor<5xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @f(%x: tensor<f32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{input must have rank >= 1}}
  %0 = llm.linear %x, %w : (tensor<f32>, tensor<4x8xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @f(%x: tensor<?x4x32xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{rope dim 64 exceeds the head dimension 32}}
  %0 = llm.rope %x, %p with <theta = 1.0e4, dim = 64> : tensor<?x4x32xf32>, tensor<?xi64>
  return
}

// -----

func.func @f(%x: tensor<3x4x32xf32>, %p: tensor<2xi64>) {
  // expected-error @+1 {{positions size is 2, expected 3}}
  %0 = llm.rope %x, %p with <theta = 1.0e4, dim = 32> : tensor<3x4x32xf32>, tensor<2xi64>
  return
}

// -----

func.func @f(%x: tensor<?x128xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{input must have rank 3}}
  %0 = llm.rope %x, %p with <theta = 1.0e4, dim = 32> : tensor<?x128xf32>, tensor<?xi64>
  return
}

// -----

func.func @f(%u: tensor<?xf32>, %c: tensor<16xf32>, %o: index) {
  // expected-error @+1 {{cache must have rank >= 2 (capacity first)}}
  %0 = llm.kv_cache_update %u into %c[%o] : tensor<?xf32> into tensor<16xf32>
  return
}

// -----

func.func @f(%u: tensor<?x4xf16>, %c: tensor<16x4xf32>, %o: index) {
  // expected-error @+1 {{update element type 'f16' differs from the cache's 'f32'}}
  %0 = llm.kv_cache_update %u into %c[%o] : tensor<?x4xf16> into tensor<16x4xf32>
  return
}

// -----

func.func @f(%u: tensor<?x8xf32>, %c: tensor<16x4xf32>, %o: index) {
  // expected-error @+1 {{update trailing dimension is 8, expected 4}}
  %0 = llm.kv_cache_update %u into %c[%o] : tensor<?x8xf32> into tensor<16x4xf32>
  return
}

// -----

func.func @f(%u: tensor<32x4xf32>, %c: tensor<16x4xf32>, %o: index) {
  // expected-error @+1 {{update of 32 rows exceeds the cache capacity 16}}
  %0 = llm.kv_cache_update %u into %c[%o] : tensor<32x4xf32> into tensor<16x4xf32>
  return
}

// -----

func.func @f(%q: tensor<?x6x8xf32>, %k: tensor<16x4x8xf32>, %v: tensor<16x4x8xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{query heads (6) must be a multiple of kv heads (4)}}
  %0 = llm.attention %q, %k, %v, %p scale = 0.5 : (tensor<?x6x8xf32>, tensor<16x4x8xf32>, tensor<16x4x8xf32>, tensor<?xi64>) -> tensor<?x6x8xf32>
  return
}

// -----

func.func @f(%q: tensor<?x8x8xf32>, %k: tensor<16x4x8xf32>, %v: tensor<16x4x8xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{scale must be positive}}
  %0 = llm.attention %q, %k, %v, %p scale = 0.0 : (tensor<?x8x8xf32>, tensor<16x4x8xf32>, tensor<16x4x8xf32>, tensor<?xi64>) -> tensor<?x8x8xf32>
  return
}

// -----

func.func @f(%q: tensor<?x8x8xf32>, %k: tensor<16x4x8xf32>, %v: tensor<16x4x8xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{sliding window must be positive}}
  %0 = llm.attention %q, %k, %v, %p scale = 0.5 window = 0 : (tensor<?x8x8xf32>, tensor<16x4x8xf32>, tensor<16x4x8xf32>, tensor<?xi64>) -> tensor<?x8x8xf32>
  return
}

// -----

func.func @f(%q: tensor<?x8x16xf32>, %k: tensor<16x4x8xf32>, %v: tensor<16x4x8xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{key head dimension is 8, expected 16}}
  %0 = llm.attention %q, %k, %v, %p scale = 0.5 : (tensor<?x8x16xf32>, tensor<16x4x8xf32>, tensor<16x4x8xf32>, tensor<?xi64>) -> tensor<?x8x8xf32>
  return
}

// -----

func.func @f(%q: tensor<?x8x8xf32>, %k: tensor<16x4x8xf32>, %v: tensor<16x4x4xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{result head dimension is 8, expected 4}}
  %0 = llm.attention %q, %k, %v, %p scale = 0.5 : (tensor<?x8x8xf32>, tensor<16x4x8xf32>, tensor<16x4x4xf32>, tensor<?xi64>) -> tensor<?x8x8xf32>
  return
}

// -----

func.func @f(%q: tensor<?x8x8xf32>, %k: tensor<16x4x8xf32>, %v: tensor<8x4x8xf32>, %p: tensor<?xi64>) {
  // expected-error @+1 {{value capacity is 8, expected 16}}
  %0 = llm.attention %q, %k, %v, %p scale = 0.5 : (tensor<?x8x8xf32>, tensor<16x4x8xf32>, tensor<8x4x8xf32>, tensor<?xi64>) -> tensor<?x8x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %a: tensor<2xf32>) {
  // expected-error @+1 {{alpha_p and alpha_n must hold one element}}
  %0 = llm.xielu %x, %a, %a beta = 0.5 eps = -1.0e-6 : tensor<?x8xf32>, tensor<2xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %c: tensor<64x16xf32>, %s: tensor<64xf32>, %off: index) {
  // expected-error @+1 {{a int8 cache stores i8, not 'f32'}}
  %c1, %s1 = llm.quantized_cache_update int8 %x into %c, %s[%off] : tensor<?x16xf32> into tensor<64x16xf32>, tensor<64xf32>
  return
}

// -----

func.func @f(%c: tensor<64x2x8xi8>, %s: tensor<64xf32>) {
  // expected-error @+1 {{scales must have rank 2, got 'tensor<64xf32>'}}
  %d = llm.dequantize_cache int8 %c, %s : tensor<64x2x8xi8>, tensor<64xf32> -> tensor<64x2x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>, %c: tensor<64x16xf8E4M3FN>, %s: tensor<64xf32>, %off: index) {
  // expected-error @+1 {{update trailing dimension is 8, expected 16}}
  %c1, %s1 = llm.quantized_cache_update fp8_e4m3 %x into %c, %s[%off] : tensor<?x8xf32> into tensor<64x16xf8E4M3FN>, tensor<64xf32>
  return
}

// -----

// Packed scales: a (scale, offset) pair or a scale alone per group.
func.func @f(%d: tensor<8x64xi8>, %s: tensor<8x2x3xf16>) {
  // expected-error @+1 {{scales must have one (scale, offset) pair or one scale per group}}
  %w = llm.packed_weight %d, %s group 32 : tensor<8x64xi8>, tensor<8x2x3xf16> -> !llm.qtensor<8x64xi8, #llm.quant<kind = gguf, format = q8_0>>
  return
}

// -----

func.func @f(%d: tensor<8x64xi8>, %s: tensor<8x4x1xf32>) {
  // expected-error @+1 {{scales must have one (scale, offset) pair or one scale per group}}
  %w = llm.packed_weight %d, %s group 32 : tensor<8x64xi8>, tensor<8x4x1xf32> -> !llm.qtensor<8x64xi8, #llm.quant<kind = gguf, format = q8_0>>
  return
}

// -----

// Superblock scales (i8): [rows, cols / 256, P * (2 + 256 / group)] bytes.
// Q4_K with offsets: 2 * (2 + 8) = 20 bytes per superblock, not 18.
func.func @f(%d: tensor<8x256xi8>, %s: tensor<8x2x18xi8>) {
  // expected-error @+1 {{superblock scales (i8) need whole superblocks of 256 and [..., rows, cols / 256, P * (2 + 256 / group)] bytes with P = 1 or 2}}
  %w = llm.packed_weight %d, %s group 32 : tensor<8x256xi8>, tensor<8x2x18xi8> -> !llm.qtensor<8x512xi4, #llm.quant<kind = gguf, format = q4_k>>
  return
}

// -----

// Superblocks need whole blocks of 256 columns.
func.func @f(%d: tensor<8x128xi8>, %s: tensor<8x1x20xi8>) {
  // expected-error @+1 {{superblock scales (i8) need whole superblocks of 256}}
  %w = llm.packed_weight %d, %s group 32 : tensor<8x128xi8>, tensor<8x1x20xi8> -> !llm.qtensor<8x128xi8, #llm.quant<kind = gguf, format = q8_0>>
  return
}

// -----

// A quantized cache's scales are f32 (only packed weights may hold f16).
func.func @f(%x: tensor<?x8xf32>, %c: tensor<64x8xi8>, %s: tensor<64xf16>, %off: index) {
  // expected-error @+1 {{operand #2 must be ranked tensor of 32-bit float values}}
  %c1, %s1 = llm.quantized_cache_update int8 %x into %c, %s[%off] : tensor<?x8xf32> into tensor<64x8xi8>, tensor<64xf16>
  return
}

// -----

// An input order of another width than the features it reorders.
func.func @f(%x: tensor<?x64xf32>, %order: tensor<32xi32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{order size}}
  %y = llm.permute %x, %order : (tensor<?x64xf32>, tensor<32xi32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

func.func @f(%x: tensor<4x?xf32>) -> tensor<4x?xf32> {
  // expected-error @+1 {{the rows (innermost dimension) must have a static size}}
  %y = llm.dynamic_quant int8 %x : tensor<4x?xf32>
  return %y : tensor<4x?xf32>
}

// -----

func.func @f(%x: tensor<4x8xf32>, %s: tensor<2xf32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{scale must hold one value}}
  %y = llm.static_quant int8 %x, %s : tensor<4x8xf32>, tensor<2xf32>
  return %y : tensor<4x8xf32>
}
