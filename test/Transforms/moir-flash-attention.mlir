// RUN: moir-opt %s -moir-flash-attention -split-input-file | FileCheck %s

// Every llm.attention gets `flash`; the function is unchanged.
// CHECK-LABEL: func.func @attention
// CHECK: llm.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scale = 3.500000e-01 window = 16 flash : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
func.func @attention(%q: tensor<?x4x8xf32>, %k: tensor<64x2x8xf32>, %v: tensor<64x2x8xf32>, %p: tensor<?xi64>) -> tensor<?x4x8xf32> {
  %o = llm.attention %q, %k, %v, %p scale = 0.35 window = 16 : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
  return %o : tensor<?x4x8xf32>
}

// -----

// mla.attend, in every form.
// CHECK-LABEL: func.func @attend
// CHECK: mla.attend {{.*}} form = materialized flash :
// CHECK: mla.attend {{.*}} form = absorbed prefill = materialized flash :
// CHECK: mla.attend {{.*}} form = absorbed flash :
func.func @attend(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) {
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = materialized
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  %b = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed prefill = materialized
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  %d = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a, %b, %d : tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>
}
