// RUN: moir-opt %s -mla-decompose-attention -split-input-file | FileCheck %s --implicit-check-not=mla.attention

// Direct query projection (DeepSeek-V2-Lite): 4 heads of 16 + 8 query dims,
// a 32-wide latent and an 8-wide shared RoPE key.
// CHECK-LABEL: func.func @v2_lite
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[POS:.*]]: tensor<?xi64>, %[[C0:.*]]: tensor<128x32xf32>, %[[R0:.*]]: tensor<128x8xf32>, %[[OFF:.*]]: index)
// CHECK: %[[Q:.*]] = llm.linear %[[X]], %{{.*}} : (tensor<?x64xf32>, tensor<96x64xf32>) -> tensor<?x96xf32>
// CHECK: %[[Q3:.*]] = tensor.expand_shape %[[Q]] {{\[\[}}0], [1, 2]] output_shape [%{{.*}}, 4, 24] : tensor<?x96xf32> into tensor<?x4x24xf32>
// CHECK: %[[QN:.*]] = tensor.extract_slice %[[Q3]][0, 0, 0] [%{{.*}}, 4, 16] [1, 1, 1] : tensor<?x4x24xf32> to tensor<?x4x16xf32>
// CHECK: %[[QP:.*]] = tensor.extract_slice %[[Q3]][0, 0, 16] [%{{.*}}, 4, 8] [1, 1, 1] : tensor<?x4x24xf32> to tensor<?x4x8xf32>
// CHECK: %[[QPR:.*]] = llm.rope %[[QP]], %[[POS]] with <theta = 1.000000e+04 : f64, dim = 8, interleaved = true> : tensor<?x4x8xf32>, tensor<?xi64>
// CHECK: %[[KV:.*]] = llm.linear %[[X]], %{{.*}} : (tensor<?x64xf32>, tensor<40x64xf32>) -> tensor<?x40xf32>
// CHECK: %[[LAT:.*]] = tensor.extract_slice %[[KV]][0, 0] [%{{.*}}, 32] [1, 1] : tensor<?x40xf32> to tensor<?x32xf32>
// CHECK: %[[LATN:.*]] = llm.rms_norm %[[LAT]], %{{.*}} epsilon = 9.9999999999999995E-7 : tensor<?x32xf32>, tensor<32xf32>
// CHECK: %[[KP:.*]] = tensor.extract_slice %[[KV]][0, 32] [%{{.*}}, 8] [1, 1] : tensor<?x40xf32> to tensor<?x8xf32>
// CHECK: %[[KP3:.*]] = tensor.expand_shape %[[KP]] {{\[\[}}0], [1, 2]] output_shape [%{{.*}}, 1, 8] : tensor<?x8xf32> into tensor<?x1x8xf32>
// CHECK: %[[KPR:.*]] = llm.rope %[[KP3]], %[[POS]]
// CHECK: %[[KPF:.*]] = tensor.collapse_shape %[[KPR]] {{\[\[}}0], [1, 2]] : tensor<?x1x8xf32> into tensor<?x8xf32>
// CHECK: %[[C1:.*]] = llm.kv_cache_update %[[LATN]] into %[[C0]][%[[OFF]]] : tensor<?x32xf32> into tensor<128x32xf32>
// CHECK: %[[R1:.*]] = llm.kv_cache_update %[[KPF]] into %[[R0]][%[[OFF]]] : tensor<?x8xf32> into tensor<128x8xf32>
// CHECK: %[[A:.*]] = mla.attend %[[QN]], %[[QPR]], %[[C1]], %[[R1]], %[[POS]], %{{.*}} config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 2.000000e-01 form = materialized : {{.*}} -> tensor<?x4x16xf32>
// CHECK: %[[A2:.*]] = tensor.collapse_shape %[[A]] {{\[\[}}0], [1, 2]] : tensor<?x4x16xf32> into tensor<?x64xf32>
// CHECK: %[[O:.*]] = llm.linear %[[A2]], %{{.*}} : (tensor<?x64xf32>, tensor<64x64xf32>) -> tensor<?x64xf32>
// CHECK: return %[[O]], %[[C1]], %[[R1]]
func.func @v2_lite(%x: tensor<?x64xf32>, %pos: tensor<?xi64>, %c0: tensor<128x32xf32>, %r0: tensor<128x8xf32>, %off: index)
    -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>) {
  %wq = llm.weight "q_proj" : tensor<96x64xf32>
  %wkva = llm.weight "kv_a_proj_with_mqa" : tensor<40x64xf32>
  %wkvn = llm.weight "kv_a_layernorm" : tensor<32xf32>
  %wkvb = llm.weight "kv_b_proj" : tensor<128x32xf32>
  %wo = llm.weight "o_proj" : tensor<64x64xf32>
  %o, %c1, %r1 = mla.attention %x, %pos, %c0, %r0[%off] q(%wq) kv(%wkva, %wkvn, %wkvb) out(%wo)
      #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true>
      scale = 0.2 epsilon = 1.0e-06
      : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index,
         tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return %o, %c1, %r1 : tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>
}

// -----

// Query LoRA (DeepSeek-V3): down-projection, RMSNorm, up-projection.
// CHECK-LABEL: func.func @v3_query_lora
// CHECK-SAME: (%[[X:.*]]: tensor<3x64xf32>
// CHECK: %[[QA:.*]] = llm.linear %[[X]], %{{.*}} : (tensor<3x64xf32>, tensor<24x64xf32>) -> tensor<3x24xf32>
// CHECK: %[[QAN:.*]] = llm.rms_norm %[[QA]], %{{.*}} epsilon = {{.*}} : tensor<3x24xf32>, tensor<24xf32>
// CHECK: %[[Q:.*]] = llm.linear %[[QAN]], %{{.*}} : (tensor<3x24xf32>, tensor<96x24xf32>) -> tensor<3x96xf32>
// CHECK: tensor.expand_shape %[[Q]] {{\[\[}}0], [1, 2]] output_shape [3, 4, 24] : tensor<3x96xf32> into tensor<3x4x24xf32>
// CHECK: mla.attend {{.*}} -> tensor<3x4x16xf32>
func.func @v3_query_lora(%x: tensor<3x64xf32>, %pos: tensor<3xi64>, %c0: tensor<128x32xf32>, %r0: tensor<128x8xf32>, %off: index)
    -> (tensor<3x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>) {
  %wqa = llm.weight "q_a_proj" : tensor<24x64xf32>
  %wqn = llm.weight "q_a_layernorm" : tensor<24xf32>
  %wqb = llm.weight "q_b_proj" : tensor<96x24xf32>
  %wkva = llm.weight "kv_a_proj_with_mqa" : tensor<40x64xf32>
  %wkvn = llm.weight "kv_a_layernorm" : tensor<32xf32>
  %wkvb = llm.weight "kv_b_proj" : tensor<128x32xf32>
  %wo = llm.weight "o_proj" : tensor<64x64xf32>
  %o, %c1, %r1 = mla.attention %x, %pos, %c0, %r0[%off] q_lora(%wqa, %wqn, %wqb) kv(%wkva, %wkvn, %wkvb) out(%wo)
      #mla.config<num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true>
      scale = 0.2 epsilon = 1.0e-06
      : (tensor<3x64xf32>, tensor<3xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index,
         tensor<24x64xf32>, tensor<24xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<3x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return %o, %c1, %r1 : tensor<3x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>
}

// -----

// W8A8 (activation_quant): the input of each projection quantized per token:
// x once for q_a and kv_a, the normed q_a, the normed latent before the cache
// (kv_b_proj multiplies what the cache holds), the attention output; int8
// products precise.
// CHECK-LABEL: func.func @w8a8
// CHECK-SAME: (%[[X:.*]]: tensor<3x64xf32>
// CHECK: %[[XQ:.*]] = llm.dynamic_quant int8 %[[X]] : tensor<3x64xf32>
// CHECK: %[[QA:.*]] = llm.linear %[[XQ]], %{{.*}} precise : (tensor<3x64xf32>, tensor<24x64xf32>) -> tensor<3x24xf32>
// CHECK: %[[QAN:.*]] = llm.rms_norm %[[QA]]
// CHECK: %[[QAQ:.*]] = llm.dynamic_quant int8 %[[QAN]] : tensor<3x24xf32>
// CHECK: llm.linear %[[QAQ]], %{{.*}} precise : (tensor<3x24xf32>, tensor<96x24xf32>) -> tensor<3x96xf32>
// CHECK: %[[KV:.*]] = llm.linear %[[XQ]], %{{.*}} precise : (tensor<3x64xf32>, tensor<40x64xf32>) -> tensor<3x40xf32>
// CHECK: %[[LATN:.*]] = llm.rms_norm
// CHECK: %[[LATQ:.*]] = llm.dynamic_quant int8 %[[LATN]] : tensor<3x32xf32>
// CHECK: llm.kv_cache_update %[[LATQ]] into
// CHECK: %[[A:.*]] = mla.attend
// CHECK: %[[A2:.*]] = tensor.collapse_shape %[[A]]
// CHECK: %[[AQ:.*]] = llm.dynamic_quant int8 %[[A2]] : tensor<3x64xf32>
// CHECK: llm.linear %[[AQ]], %{{.*}} precise : (tensor<3x64xf32>, tensor<64x64xf32>) -> tensor<3x64xf32>
func.func @w8a8(%x: tensor<3x64xf32>, %pos: tensor<3xi64>, %c0: tensor<128x32xf32>, %r0: tensor<128x8xf32>, %off: index)
    -> (tensor<3x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>) {
  %wqa = llm.weight "q_a_proj" : tensor<24x64xf32>
  %wqn = llm.weight "q_a_layernorm" : tensor<24xf32>
  %wqb = llm.weight "q_b_proj" : tensor<96x24xf32>
  %wkva = llm.weight "kv_a_proj_with_mqa" : tensor<40x64xf32>
  %wkvn = llm.weight "kv_a_layernorm" : tensor<32xf32>
  %wkvb = llm.weight "kv_b_proj" : tensor<128x32xf32>
  %wo = llm.weight "o_proj" : tensor<64x64xf32>
  %o, %c1, %r1 = mla.attention %x, %pos, %c0, %r0[%off] q_lora(%wqa, %wqn, %wqb) kv(%wkva, %wkvn, %wkvb) out(%wo)
      #mla.config<num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true>
      scale = 0.2 epsilon = 1.0e-06 activation_quant int8
      : (tensor<3x64xf32>, tensor<3xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index,
         tensor<24x64xf32>, tensor<24xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<3x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return %o, %c1, %r1 : tensor<3x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>
}
