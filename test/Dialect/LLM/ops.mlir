// RUN: moir-opt %s | moir-opt | FileCheck %s
// RUN: moir-opt %s --mlir-print-op-generic | moir-opt | FileCheck %s

// Weight references: float, FP8 block-scaled, INT8 per-channel, INT4 groups,
// GGUF blocks, and a stack of per-expert tensors.
// CHECK-LABEL: func.func @weights
func.func @weights() {
  // CHECK: llm.weight "model.embed_tokens.weight" : tensor<32000x1024xbf16>
  %0 = llm.weight "model.embed_tokens.weight" : tensor<32000x1024xbf16>
  // CHECK: llm.weight "w_fp8" scales "w_fp8_scale_inv" : !llm.qtensor<7168x2048xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  %1 = llm.weight "w_fp8" scales "w_fp8_scale_inv" : !llm.qtensor<7168x2048xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  // CHECK: llm.weight "w_i8" scales "w_i8_scale" : !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>
  %2 = llm.weight "w_i8" scales "w_i8_scale" : !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>
  // CHECK: !llm.qtensor<96x160xi4, #llm.quant<kind = group, group = 32, zero_point = true, scale = f16>>
  %3 = llm.weight "w_i4" scales "w_i4_scales" : !llm.qtensor<96x160xi4, #llm.quant<kind = group, group = 32, zero_point = true, scale = f16>>
  // CHECK: llm.weight "blk.0.attn_q.weight" : !llm.qtensor<64x512xi4, #llm.quant<kind = gguf, format = q4_k>>
  %4 = llm.weight "blk.0.attn_q.weight" : !llm.qtensor<64x512xi4, #llm.quant<kind = gguf, format = q4_k>>
  // CHECK: !llm.qtensor<64x256xi6, #llm.quant<kind = gguf, format = q6_k>>
  %5 = llm.weight "blk.0.ffn_down.weight" : !llm.qtensor<64x256xi6, #llm.quant<kind = gguf, format = q6_k>>
  // CHECK: !llm.qtensor<64x64xi8, #llm.quant<kind = gguf, format = q8_0>>
  %6 = llm.weight "blk.0.attn_k.weight" : !llm.qtensor<64x64xi8, #llm.quant<kind = gguf, format = q8_0>>
  // CHECK: !llm.qtensor<64x64xi4, #llm.quant<kind = gguf, format = q4_0>>
  %7 = llm.weight "blk.0.attn_v.weight" : !llm.qtensor<64x64xi4, #llm.quant<kind = gguf, format = q4_0>>
  // CHECK: !llm.qtensor<16x16xf8E5M2, #llm.quant<kind = per_tensor>>
  %8 = llm.weight "w_e5m2" scales "w_e5m2_scale" : !llm.qtensor<16x16xf8E5M2, #llm.quant<kind = per_tensor>>
  // CHECK: llm.stacked_weight ["experts.0.w1.weight", "experts.1.w1.weight"] : tensor<2x2816x1024xf32>
  %9 = llm.stacked_weight ["experts.0.w1.weight", "experts.1.w1.weight"] : tensor<2x2816x1024xf32>
  // CHECK: llm.stacked_weight ["e0", "e1"] scales ["e0_s", "e1_s"] : !llm.qtensor<2x256x128xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>
  %10 = llm.stacked_weight ["e0", "e1"] scales ["e0_s", "e1_s"] : !llm.qtensor<2x256x128xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>
  return
}

// CHECK-LABEL: func.func @dequantize
func.func @dequantize(%q: !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<256x512xf32> {
  // CHECK: llm.dequantize %{{.*}} : <256x512xi8, #llm.quant<kind = per_channel, axis = 0>> -> tensor<256x512xf32>
  %0 = llm.dequantize %q : !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>> -> tensor<256x512xf32>
  return %0 : tensor<256x512xf32>
}

// A dense decoder block: embedding, RMSNorm, projections with bias, QK-norm,
// RoPE, cache updates, GQA with a sliding window, SwiGLU and xIELU.
// CHECK-LABEL: func.func @dense_block
func.func @dense_block(%ids: tensor<?xi32>, %pos: tensor<?xi64>, %off: index,
                       %kc: tensor<4096x4x64xf32>, %vc: tensor<4096x4x64xf32>)
    -> (tensor<?x256xf32>, tensor<?x1024xf32>) {
  %table = llm.weight "embed" : tensor<1000x256xf32>
  // CHECK: llm.embedding %{{.*}}, %{{.*}} : (tensor<?xi32>, tensor<1000x256xf32>) -> tensor<?x256xf32>
  %h = llm.embedding %ids, %table : (tensor<?xi32>, tensor<1000x256xf32>) -> tensor<?x256xf32>
  // Gemma: embeddings times sqrt(hidden), norms scaling by (1 + w).
  // CHECK: llm.embedding %{{.*}}, %{{.*}} scale = 1.600000e+01 : (tensor<?xi32>, tensor<1000x256xf32>) -> tensor<?x256xf32>
  %hs = llm.embedding %ids, %table scale = 16.0 : (tensor<?xi32>, tensor<1000x256xf32>) -> tensor<?x256xf32>
  %nw = llm.weight "norm" : tensor<256xf32>
  // CHECK: llm.rms_norm %{{.*}}, %{{.*}} epsilon = 1.000000e-05 : tensor<?x256xf32>, tensor<256xf32>
  %n = llm.rms_norm %h, %nw epsilon = 1.0e-05 : tensor<?x256xf32>, tensor<256xf32>
  // CHECK: llm.rms_norm %{{.*}}, %{{.*}} epsilon = {{.*}} offset = 1.000000e+00 : tensor<?x256xf32>, tensor<256xf32>
  %ng = llm.rms_norm %hs, %nw epsilon = 1.0e-06 offset = 1.0 : tensor<?x256xf32>, tensor<256xf32>
  %wq = llm.weight "q" : tensor<1024x256xf32>
  %bq = llm.weight "q_bias" : tensor<1024xf32>
  // CHECK: llm.linear %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x256xf32>, tensor<1024x256xf32>, tensor<1024xf32>) -> tensor<?x1024xf32>
  %q = llm.linear %n, %wq, %bq : (tensor<?x256xf32>, tensor<1024x256xf32>, tensor<1024xf32>) -> tensor<?x1024xf32>
  %wk = llm.weight "k" : tensor<256x256xf32>
  // CHECK: llm.linear %{{.*}}, %{{.*}} : (tensor<?x256xf32>, tensor<256x256xf32>) -> tensor<?x256xf32>
  %k = llm.linear %n, %wk : (tensor<?x256xf32>, tensor<256x256xf32>) -> tensor<?x256xf32>
  %c0 = arith.constant 0 : index
  %t = tensor.dim %q, %c0 : tensor<?x1024xf32>
  %q3 = tensor.expand_shape %q [[0], [1, 2]] output_shape [%t, 16, 64] : tensor<?x1024xf32> into tensor<?x16x64xf32>
  %k3 = tensor.expand_shape %k [[0], [1, 2]] output_shape [%t, 4, 64] : tensor<?x256xf32> into tensor<?x4x64xf32>
  %qn = llm.weight "q_norm" : tensor<64xf32>
  // CHECK: llm.rms_norm %{{.*}}, %{{.*}} epsilon = {{.*}} : tensor<?x16x64xf32>, tensor<64xf32>
  %q4 = llm.rms_norm %q3, %qn epsilon = 1.0e-06 : tensor<?x16x64xf32>, tensor<64xf32>
  // CHECK: llm.rope %{{.*}}, %{{.*}} with <theta = 5.000000e+05 : f64, dim = 64, scaling = llama3, factor = 8.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, high_freq_factor = 4.000000e+00 : f64, original_max_position = 8192> : tensor<?x16x64xf32>, tensor<?xi64>
  %q5 = llm.rope %q4, %pos with <theta = 500000.0, dim = 64, scaling = llama3, factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position = 8192> : tensor<?x16x64xf32>, tensor<?xi64>
  // CHECK: llm.rope %{{.*}}, %{{.*}} with <theta = 1.000000e+04 : f64, dim = 32, scaling = yarn, factor = 4.000000e+01 : f64, original_max_position = 4096, beta_fast = 3.200000e+01 : f64, beta_slow = 1.000000e+00 : f64, mscale = 1.000000e+00 : f64, mscale_all_dim = 1.000000e+00 : f64, interleaved = true>
  %k4 = llm.rope %k3, %pos with <theta = 10000.0, dim = 32, scaling = yarn, factor = 40.0, original_max_position = 4096, beta_fast = 32.0, beta_slow = 1.0, mscale = 1.0, mscale_all_dim = 1.0, interleaved = true> : tensor<?x4x64xf32>, tensor<?xi64>
  // CHECK: llm.rope %{{.*}}, %{{.*}} with <theta = 1.000000e+04 : f64, dim = 64, scaling = linear, factor = 2.000000e+00 : f64>
  %k5 = llm.rope %k4, %pos with <theta = 10000.0, dim = 64, scaling = linear, factor = 2.0> : tensor<?x4x64xf32>, tensor<?xi64>
  // Per-pair frequency divisors (llama.cpp's rope_freqs).
  // CHECK: llm.rope %{{.*}}, %{{.*}} with <theta = 1.000000e+04 : f64, dim = 8, freq_factors = [1.000000e+00, 2.000000e+00, 4.000000e+00, 8.000000e+00]>
  %k6 = llm.rope %k5, %pos with <theta = 10000.0, dim = 8, freq_factors = [1.0, 2.0, 4.0, 8.0]> : tensor<?x4x64xf32>, tensor<?xi64>
  // CHECK: llm.kv_cache_update %{{.*}} into %{{.*}}[%{{.*}}] : tensor<?x4x64xf32> into tensor<4096x4x64xf32>
  %kc1 = llm.kv_cache_update %k5 into %kc[%off] : tensor<?x4x64xf32> into tensor<4096x4x64xf32>
  %vc1 = llm.kv_cache_update %k5 into %vc[%off] : tensor<?x4x64xf32> into tensor<4096x4x64xf32>
  // CHECK: llm.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scale = 1.250000e-01 window = 4096 : (tensor<?x16x64xf32>, tensor<4096x4x64xf32>, tensor<4096x4x64xf32>, tensor<?xi64>) -> tensor<?x16x64xf32>
  %a = llm.attention %q5, %kc1, %vc1, %pos scale = 0.125 window = 4096 : (tensor<?x16x64xf32>, tensor<4096x4x64xf32>, tensor<4096x4x64xf32>, tensor<?xi64>) -> tensor<?x16x64xf32>
  // CHECK: llm.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scale = 1.250000e-01 : (
  %a2 = llm.attention %q5, %kc1, %vc1, %pos scale = 0.125 : (tensor<?x16x64xf32>, tensor<4096x4x64xf32>, tensor<4096x4x64xf32>, tensor<?xi64>) -> tensor<?x16x64xf32>
  %flat = tensor.collapse_shape %a [[0], [1, 2]] : tensor<?x16x64xf32> into tensor<?x1024xf32>
  // CHECK: llm.glu silu %{{.*}}, %{{.*}} : tensor<?x1024xf32>
  %g = llm.glu silu %flat, %flat : tensor<?x1024xf32>
  // CHECK: llm.glu gelu_tanh %{{.*}}, %{{.*}} : tensor<?x1024xf32>
  %g2 = llm.glu gelu_tanh %g, %flat : tensor<?x1024xf32>
  // CHECK: llm.activation relu %{{.*}} : tensor<?x1024xf32>
  %r = llm.activation relu %g2 : tensor<?x1024xf32>
  // CHECK: llm.activation gelu %{{.*}} : tensor<?x1024xf32>
  %r2 = llm.activation gelu %r : tensor<?x1024xf32>
  %ap = llm.weight "mlp.act_fn.alpha_p" : tensor<1xf32>
  %an = llm.weight "mlp.act_fn.alpha_n" : tensor<1xf32>
  // CHECK: llm.xielu %{{.*}}, %{{.*}}, %{{.*}} beta = 5.000000e-01 eps = -9.9999999999999995E-7 : tensor<?x1024xf32>, tensor<1xf32>
  %x = llm.xielu %r2, %ap, %an beta = 0.5 eps = -1.0e-06 : tensor<?x1024xf32>, tensor<1xf32>
  return %n, %x : tensor<?x256xf32>, tensor<?x1024xf32>
}

// Quantized weights feed the ops that have kernels for them.
// CHECK-LABEL: func.func @quantized_consumers
func.func @quantized_consumers(%x: tensor<?x512xf32>, %ids: tensor<?xi32>) -> (tensor<?x256xf32>, tensor<?x512xf32>) {
  %w = llm.weight "w" scales "w_scale" : !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>
  // CHECK: llm.linear %{{.*}}, %{{.*}} : (tensor<?x512xf32>, !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<?x256xf32>
  %y = llm.linear %x, %w : (tensor<?x512xf32>, !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<?x256xf32>
  %t = llm.weight "token_embd.weight" : !llm.qtensor<1000x512xi8, #llm.quant<kind = gguf, format = q8_0>>
  // CHECK: llm.embedding %{{.*}}, %{{.*}} : (tensor<?xi32>, !llm.qtensor<1000x512xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x512xf32>
  %e = llm.embedding %ids, %t : (tensor<?xi32>, !llm.qtensor<1000x512xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x512xf32>
  return %y, %e : tensor<?x256xf32>, tensor<?x512xf32>
}

// CHECK-LABEL: func.func @quantized_cache
func.func @quantized_cache(%x: tensor<?x512xf32>, %c: tensor<4096x512xi8>, %s: tensor<4096xf32>, %k: tensor<?x2x8xf32>, %f: tensor<64x2x8xf8E4M3FN>, %fs: tensor<64x2xf32>, %off: index) -> (tensor<4096x512xf32>, tensor<64x2x8xf32>) {
  // CHECK: llm.quantized_cache_update int8 %{{.*}} into %{{.*}}, %{{.*}}[%{{.*}}] : tensor<?x512xf32> into tensor<4096x512xi8>, tensor<4096xf32>
  %c1, %s1 = llm.quantized_cache_update int8 %x into %c, %s[%off] : tensor<?x512xf32> into tensor<4096x512xi8>, tensor<4096xf32>
  // CHECK: llm.dequantize_cache int8 %{{.*}}, %{{.*}} : tensor<4096x512xi8>, tensor<4096xf32> -> tensor<4096x512xf32>
  %d = llm.dequantize_cache int8 %c1, %s1 : tensor<4096x512xi8>, tensor<4096xf32> -> tensor<4096x512xf32>
  // CHECK: llm.quantized_cache_update fp8_e4m3
  %f1, %fs1 = llm.quantized_cache_update fp8_e4m3 %k into %f, %fs[%off] : tensor<?x2x8xf32> into tensor<64x2x8xf8E4M3FN>, tensor<64x2xf32>
  // CHECK: llm.dequantize_cache fp8_e4m3
  %fd = llm.dequantize_cache fp8_e4m3 %f1, %fs1 : tensor<64x2x8xf8E4M3FN>, tensor<64x2xf32> -> tensor<64x2x8xf32>
  return %d, %fd : tensor<4096x512xf32>, tensor<64x2x8xf32>
}

// CHECK-LABEL: func.func @permute
func.func @permute(%x: tensor<?x64xf32>, %order: tensor<64xi32>) -> tensor<?x64xf32> {
  // CHECK: llm.permute %{{.*}}, %{{.*}} : (tensor<?x64xf32>, tensor<64xi32>) -> tensor<?x64xf32>
  %y = llm.permute %x, %order : (tensor<?x64xf32>, tensor<64xi32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @static_quant
func.func @static_quant(%x: tensor<?x64xf32>, %s: tensor<1xbf16>) -> tensor<?x64xf32> {
  // CHECK: llm.static_quant fp8_e4m3 %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<1xbf16>
  %y = llm.static_quant fp8_e4m3 %x, %s : tensor<?x64xf32>, tensor<1xbf16>
  return %y : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @dynamic_quant
func.func @dynamic_quant(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  // CHECK: llm.dynamic_quant int8 %{{.*}} : tensor<?x64xf32>
  // CHECK: llm.dynamic_quant fp8_e4m3 %{{.*}} : tensor<?x64xf32>
  %y = llm.dynamic_quant int8 %x : tensor<?x64xf32>
  %z = llm.dynamic_quant fp8_e4m3 %y : tensor<?x64xf32>
  return %z : tensor<?x64xf32>
}
