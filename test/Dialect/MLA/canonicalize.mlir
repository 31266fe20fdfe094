// RUN: moir-opt %s -canonicalize -split-input-file | FileCheck %s

// MLA projections read FP8 weights directly; kv_a_norm (a float vector) is
// not a quantized operand.
// CHECK-LABEL: func.func @attention_reads_quantized
// CHECK-NOT: llm.dequantize
// CHECK: mla.attention {{.*}} : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, !llm.qtensor<96x64xf8E4M3FN, {{.*}}>, tensor<40x64xf32>, tensor<32xf32>, !llm.qtensor<128x32xf8E4M3FN, {{.*}}>, tensor<64x64xf32>)
func.func @attention_reads_quantized(%x: tensor<?x64xf32>, %pos: tensor<?xi64>, %c0: tensor<128x32xf32>, %r0: tensor<128x8xf32>, %off: index)
    -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>) {
  %qq = llm.weight "q_proj" scales "q_proj_s" : !llm.qtensor<96x64xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  %wq = llm.dequantize %qq : !llm.qtensor<96x64xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>> -> tensor<96x64xf32>
  %wkva = llm.weight "kv_a_proj_with_mqa" : tensor<40x64xf32>
  %wkvn = llm.weight "kv_a_layernorm" : tensor<32xf32>
  %qkvb = llm.weight "kv_b_proj" scales "kv_b_proj_s" : !llm.qtensor<128x32xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  %wkvb = llm.dequantize %qkvb : !llm.qtensor<128x32xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>> -> tensor<128x32xf32>
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

// CHECK-LABEL: func.func @attend_reads_quantized
// CHECK-NOT: llm.dequantize
// CHECK: mla.attend {{.*}} : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, !llm.qtensor<128x32xi8, #llm.quant<kind = per_channel, axis = 0>>)
func.func @attend_reads_quantized(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>) -> tensor<?x4x16xf32> {
  %q = llm.weight "kv_b_proj" scales "kv_b_proj_scale" : !llm.qtensor<128x32xi8, #llm.quant<kind = per_channel, axis = 0>>
  %w = llm.dequantize %q : !llm.qtensor<128x32xi8, #llm.quant<kind = per_channel, axis = 0>> -> tensor<128x32xf32>
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}
