// RUN: moir-opt %s -mla-absorb-weights | FileCheck %s

// DeepSeek-like sizes (rank 32 > (nope + v) / 2): decode absorbed, prefill
// materialized where the cost model finds it cheaper; the choice is in the IR.
// CHECK-LABEL: func.func @deepseek
// CHECK: mla.attend {{.*}} form = absorbed prefill = materialized
func.func @deepseek(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>,
                    %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %o = mla.attend %qn, %qp, %c, %r, %pos, %w
         config #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16,
                             qk_rope_head_dim = 8, v_head_dim = 16>
         scale = 0.2 form = materialized
         : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>,
            tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}

// A latent wider than the heads' expansion (rank 8 < (nope + v) / 2): absorbed
// in every phase, no prefill form.
// CHECK-LABEL: func.func @narrow_latent
// CHECK: mla.attend {{.*}} form = absorbed :
// CHECK-NOT: prefill =
func.func @narrow_latent(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x8xf32>,
                         %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %w: tensor<128x8xf32>) -> tensor<?x4x16xf32> {
  %o = mla.attend %qn, %qp, %c, %r, %pos, %w
         config #mla.config<num_heads = 4, kv_lora_rank = 8, qk_nope_head_dim = 16,
                             qk_rope_head_dim = 8, v_head_dim = 16>
         scale = 0.2 form = materialized
         : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x8xf32>, tensor<128x8xf32>,
            tensor<?xi64>, tensor<128x8xf32>) -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}
