// RUN: moir-opt %s -moe-expert-parallel="ranks=2 rank=1" -split-input-file -verify-diagnostics | FileCheck %s
// RUN: moir-opt %s -moe-expert-parallel="ranks=2 rank=0" -split-input-file -verify-diagnostics | FileCheck %s --check-prefix=RANK0

// Rank 1 of 2 keeps experts 2 and 3 of 4 (contiguous blocks); the rows of
// every rank are summed, then combined in expert order.
// CHECK-LABEL: func.func @routed
// CHECK-DAG: %[[G:.*]] = llm.stacked_weight ["e2.w1", "e3.w1"] : tensor<2x32x64xf32>
// CHECK-DAG: %[[U:.*]] = llm.stacked_weight ["e2.w3", "e3.w3"] : tensor<2x32x64xf32>
// CHECK-DAG: %[[D:.*]] = llm.stacked_weight ["e2.w2", "e3.w2"] : tensor<2x64x32xf32>
// CHECK: %[[R:.*]] = moe.expert_rows silu %{{.*}}, %[[IDS:.*]], %{{.*}} experts(%[[G]], %[[U]], %[[D]]) owners = [0, 0, 1, 1] rank = 1
// CHECK-SAME: -> tensor<?x64xf32>
// CHECK-NEXT: %[[S:.*]] = llm.all_reduce %[[R]] ranks = 2 : tensor<?x64xf32>
// CHECK-NEXT: %[[Y:.*]] = moe.combine_rows %[[S]], %[[IDS]] experts = 4 shared = 0
// CHECK-NEXT: return %[[Y]]
// CHECK-NOT: moe.fused_experts
// RANK0-LABEL: func.func @routed
// RANK0: llm.stacked_weight ["e0.w1", "e1.w1"] : tensor<2x32x64xf32>
// RANK0: moe.expert_rows {{.*}} owners = [0, 0, 1, 1] rank = 0
func.func @routed(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %wg = llm.stacked_weight ["e0.w1", "e1.w1", "e2.w1", "e3.w1"] : tensor<4x32x64xf32>
  %wu = llm.stacked_weight ["e0.w3", "e1.w3", "e2.w3", "e3.w3"] : tensor<4x32x64xf32>
  %wd = llm.stacked_weight ["e0.w2", "e1.w2", "e2.w2", "e3.w2"] : tensor<4x64x32xf32>
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Two shared experts (FFN 64 = 2 x 32): owned round-robin (shared 0 on rank
// 0, shared 1 on rank 1), their weights whole on every rank.
// CHECK-LABEL: func.func @shared
// CHECK: moe.expert_rows {{.*}} shared(%{{.*}}, %{{.*}}, %{{.*}}) owners = [0, 0, 1, 1, 0, 1] rank = 1
// CHECK: moe.combine_rows {{.*}} experts = 4 shared = 2
func.func @shared(%x: tensor<5x64xf32>, %w: tensor<5x2xf32>, %ids: tensor<5x2xi32>) -> tensor<5x64xf32> {
  %wg = llm.stacked_weight ["e0.w1", "e1.w1", "e2.w1", "e3.w1"] : tensor<4x32x64xf32>
  %wu = llm.stacked_weight ["e0.w3", "e1.w3", "e2.w3", "e3.w3"] : tensor<4x32x64xf32>
  %wd = llm.stacked_weight ["e0.w2", "e1.w2", "e2.w2", "e3.w2"] : tensor<4x64x32xf32>
  %sg = llm.weight "sg" : tensor<64x64xf32>
  %su = llm.weight "su" : tensor<64x64xf32>
  %sd = llm.weight "sd" : tensor<64x64xf32>
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) shared(%sg, %su, %sd) : (tensor<5x64xf32>, tensor<5x2xi32>, tensor<5x2xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  return %y : tensor<5x64xf32>
}

// -----

// Experts stored as one tensor (GGUF's ffn_*_exps): the weight store's views
// of this rank's experts.
// CHECK-LABEL: func.func @one_tensor
// CHECK: llm.stacked_weight ["blk.0.ffn_gate_exps.weight[expert=2]", "blk.0.ffn_gate_exps.weight[expert=3]"] : tensor<2x32x64xf32>
// CHECK: moe.expert_rows
func.func @one_tensor(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %wg = llm.weight "blk.0.ffn_gate_exps.weight" : tensor<4x32x64xf32>
  %wu = llm.weight "blk.0.ffn_up_exps.weight" : tensor<4x32x64xf32>
  %wd = llm.weight "blk.0.ffn_down_exps.weight" : tensor<4x64x32xf32>
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// More ranks than experts: refused, naming both counts.
func.func @too_few(%x: tensor<?x64xf32>, %w: tensor<?x1xf32>, %ids: tensor<?x1xi32>) -> tensor<?x64xf32> {
  %wg = llm.stacked_weight ["e0.w1"] : tensor<1x32x64xf32>
  %wu = llm.stacked_weight ["e0.w3"] : tensor<1x32x64xf32>
  %wd = llm.stacked_weight ["e0.w2"] : tensor<1x64x32xf32>
  // expected-error @below {{has 1 routed experts, fewer than the 2 ranks to split them over}}
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) : (tensor<?x64xf32>, tensor<?x1xi32>, tensor<?x1xf32>, tensor<1x32x64xf32>, tensor<1x32x64xf32>, tensor<1x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// With loads for the layer (MoE layer 0: the first fused op), the experts go by decreasing load to the
// least-loaded rank with room (2 experts each): 100 -> 0, 90 -> 1, 5 -> 1,
// 3 -> 0; rank 1 keeps experts 1 and 2.
// LOADS-LABEL: func.func @placed
// LOADS: llm.stacked_weight ["e1.w1", "e2.w1"] : tensor<2x32x64xf32>
// LOADS: moe.expert_rows {{.*}} owners = [0, 1, 1, 0] rank = 1
// RUN: moir-opt %s -moe-expert-parallel="ranks=2 rank=1 loads=0=100,90,5,3" -split-input-file -verify-diagnostics 2>&1 | FileCheck %s --check-prefix=LOADS
func.func @placed(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %wg = llm.stacked_weight ["e0.w1", "e1.w1", "e2.w1", "e3.w1"] : tensor<4x32x64xf32>
  %wu = llm.stacked_weight ["e0.w3", "e1.w3", "e2.w3", "e3.w3"] : tensor<4x32x64xf32>
  %wd = llm.stacked_weight ["e0.w2", "e1.w2", "e2.w2", "e3.w2"] : tensor<4x64x32xf32>
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) {moir.layer = 7 : i64} : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
