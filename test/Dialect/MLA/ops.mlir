// RUN: moir-opt %s | moir-opt | FileCheck %s
// RUN: moir-opt %s --mlir-print-op-generic | moir-opt | FileCheck %s

// DeepSeek-V2-Lite style: queries projected directly (q_lora_rank = 0).
// CHECK-LABEL: func.func @v2_lite
func.func @v2_lite(%x: tensor<?x64xf32>, %pos: tensor<?xi64>, %c0: tensor<128x32xf32>, %r0: tensor<128x8xf32>, %off: index)
    -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>) {
  %wq = llm.weight "q_proj" : tensor<96x64xf32>
  %wkva = llm.weight "kv_a_proj_with_mqa" : tensor<40x64xf32>
  %wkvn = llm.weight "kv_a_layernorm" : tensor<32xf32>
  %wkvb = llm.weight "kv_b_proj" : tensor<128x32xf32>
  %wo = llm.weight "o_proj" : tensor<64x64xf32>
  // CHECK: mla.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}[%{{.*}}] q(%{{.*}}) kv(%{{.*}}, %{{.*}}, %{{.*}}) out(%{{.*}}) <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> <theta = 1.000000e+04 : f64, dim = 8, interleaved = true> scale = 2.000000e-01 epsilon = 9.9999999999999995E-7
  %o, %c1, %r1 = mla.attention %x, %pos, %c0, %r0[%off] q(%wq) kv(%wkva, %wkvn, %wkvb) out(%wo)
      #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true>
      scale = 0.2 epsilon = 1.0e-06
      : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index,
         tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return %o, %c1, %r1 : tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>
}

// DeepSeek-V3 style: query LoRA, YaRN RoPE, FP8 block-scaled projections.
// CHECK-LABEL: func.func @v3
func.func @v3(%x: tensor<?x64xf32>, %pos: tensor<?xi64>, %c0: tensor<256x32xf32>, %r0: tensor<256x8xf32>, %off: index)
    -> (tensor<?x64xf32>, tensor<256x32xf32>, tensor<256x8xf32>) {
  %wqa = llm.weight "q_a_proj" scales "q_a_proj_s" : !llm.qtensor<24x64xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  %wqn = llm.weight "q_a_layernorm" : tensor<24xf32>
  %wqb = llm.weight "q_b_proj" scales "q_b_proj_s" : !llm.qtensor<96x24xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  %wkva = llm.weight "kv_a_proj_with_mqa" : tensor<40x64xf32>
  %wkvn = llm.weight "kv_a_layernorm" : tensor<32xf32>
  %wkvb = llm.weight "kv_b_proj" : tensor<128x32xf32>
  %wo = llm.weight "o_proj" : tensor<64x64xf32>
  // CHECK: mla.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}[%{{.*}}] q_lora(%{{.*}}, %{{.*}}, %{{.*}}) kv(%{{.*}}, %{{.*}}, %{{.*}}) out(%{{.*}}) <num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32
  // CHECK-SAME: scaling = yarn
  %o, %c1, %r1 = mla.attention %x, %pos, %c0, %r0[%off] q_lora(%wqa, %wqn, %wqb) kv(%wkva, %wkvn, %wkvb) out(%wo)
      #mla.config<num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      #llm.rope<theta = 1.0e+04, dim = 8, scaling = yarn, factor = 40.0, original_max_position = 4096, mscale = 1.0, mscale_all_dim = 1.0, interleaved = true>
      scale = 0.2 epsilon = 1.0e-06
      : (tensor<?x64xf32>, tensor<?xi64>, tensor<256x32xf32>, tensor<256x8xf32>, index,
         !llm.qtensor<24x64xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>, tensor<24xf32>,
         !llm.qtensor<96x24xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<?x64xf32>, tensor<256x32xf32>, tensor<256x8xf32>)
  return %o, %c1, %r1 : tensor<?x64xf32>, tensor<256x32xf32>, tensor<256x8xf32>
}

// Latent attention in both forms.
// CHECK-LABEL: func.func @attend
func.func @attend(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>)
    -> (tensor<?x4x16xf32>, tensor<?x4x16xf32>) {
  %wkvb = llm.weight "kv_b_proj" : tensor<128x32xf32>
  // CHECK: mla.attend %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 2.000000e-01 form = materialized
  %a = mla.attend %qn, %qp, %c, %r, %pos, %wkvb config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = materialized
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  // CHECK: form = absorbed
  %b = mla.attend %qn, %qp, %c, %r, %pos, %wkvb config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a, %b : tensor<?x4x16xf32>, tensor<?x4x16xf32>
}
