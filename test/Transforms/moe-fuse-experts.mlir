// RUN: moir-opt %s -moe-fuse-experts -split-input-file | FileCheck %s

// Mixtral: dispatch, the grouped FFN and combine become one op.
// CHECK-LABEL: func.func @routed_only
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[W:.*]]: tensor<?x2xf32>, %[[IDS:.*]]: tensor<?x2xi32>)
// CHECK-NOT: moe.dispatch
// CHECK-NOT: moe.expert_ffn
// CHECK-NOT: moe.combine
// CHECK: %[[Y:.*]] = moe.fused_experts silu %[[X]], %[[IDS]], %[[W]] experts(%{{.*}}, %{{.*}}, %{{.*}}) : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
// CHECK-NEXT: return %[[Y]]
func.func @routed_only(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %y = moe.combine %out, %src, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// DeepSeek: two shared experts (FFN 64 = 2 x 32) added to the routed result
// join the fused op; the dense FFN and the add disappear.
// CHECK-LABEL: func.func @shared_folds
// CHECK: %[[SG:.*]] = llm.weight "sg"
// CHECK: %[[SU:.*]] = llm.weight "su"
// CHECK: %[[SD:.*]] = llm.weight "sd"
// CHECK-NOT: llm.linear
// CHECK-NOT: llm.glu
// CHECK-NOT: arith.addf
// CHECK: %[[Y:.*]] = moe.fused_experts silu %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) shared(%[[SG]], %[[SU]], %[[SD]])
// CHECK-NEXT: return %[[Y]]
func.func @shared_folds(%x: tensor<5x64xf32>, %w: tensor<5x3xf32>, %ids: tensor<5x3xi32>) -> tensor<5x64xf32> {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<64x64xf32>
  %su = llm.weight "su" : tensor<64x64xf32>
  %sd = llm.weight "sd" : tensor<64x64xf32>
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : tensor<5x64xf32>, tensor<5x3xi32> -> tensor<15x64xf32>, tensor<9xi32>, tensor<15xi32>
  %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : (tensor<15x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<15x64xf32>
  %r = moe.combine %out, %src, %w : tensor<15x64xf32>, tensor<15xi32>, tensor<5x3xf32> -> tensor<5x64xf32>
  %g = llm.linear %x, %sg : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %u = llm.linear %x, %su : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %h = llm.glu silu %g, %u : tensor<5x64xf32>
  %s = llm.linear %h, %sd : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %y = arith.addf %s, %r : tensor<5x64xf32>
  return %y : tensor<5x64xf32>
}

// -----

// A shared expert whose FFN width (48) is not a multiple of the routed
// experts' (32) stays a dense FFN added to the fused routed result.
// CHECK-LABEL: func.func @shared_odd_width
// CHECK: %[[R:.*]] = moe.fused_experts silu %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) :
// CHECK: llm.glu
// CHECK: %[[S:.*]] = llm.linear
// CHECK: arith.addf %[[R]], %[[S]]
func.func @shared_odd_width(%x: tensor<5x64xf32>, %w: tensor<5x3xf32>, %ids: tensor<5x3xi32>) -> tensor<5x64xf32> {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<48x64xf32>
  %su = llm.weight "su" : tensor<48x64xf32>
  %sd = llm.weight "sd" : tensor<64x48xf32>
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : tensor<5x64xf32>, tensor<5x3xi32> -> tensor<15x64xf32>, tensor<9xi32>, tensor<15xi32>
  %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : (tensor<15x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<15x64xf32>
  %r = moe.combine %out, %src, %w : tensor<15x64xf32>, tensor<15xi32>, tensor<5x3xf32> -> tensor<5x64xf32>
  %g = llm.linear %x, %sg : (tensor<5x64xf32>, tensor<48x64xf32>) -> tensor<5x48xf32>
  %u = llm.linear %x, %su : (tensor<5x64xf32>, tensor<48x64xf32>) -> tensor<5x48xf32>
  %h = llm.glu silu %g, %u : tensor<5x48xf32>
  %s = llm.linear %h, %sd : (tensor<5x48xf32>, tensor<64x48xf32>) -> tensor<5x64xf32>
  %y = arith.addf %r, %s : tensor<5x64xf32>
  return %y : tensor<5x64xf32>
}

// -----

// Qwen2-MoE's gated shared expert (sigmoid(x W_gate) scales it) is not the
// plain dense FFN the fused op folds: it stays outside.
// CHECK-LABEL: func.func @gated_shared_stays
// CHECK: %[[R:.*]] = moe.fused_experts silu %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) :
// CHECK: %[[S:.*]] = arith.mulf
// CHECK: arith.addf %[[R]], %[[S]]
func.func @gated_shared_stays(%x: tensor<5x64xf32>, %w: tensor<5x3xf32>, %ids: tensor<5x3xi32>, %scale: tensor<5x64xf32>) -> tensor<5x64xf32> {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<64x64xf32>
  %su = llm.weight "su" : tensor<64x64xf32>
  %sd = llm.weight "sd" : tensor<64x64xf32>
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : tensor<5x64xf32>, tensor<5x3xi32> -> tensor<15x64xf32>, tensor<9xi32>, tensor<15xi32>
  %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : (tensor<15x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<15x64xf32>
  %r = moe.combine %out, %src, %w : tensor<15x64xf32>, tensor<15xi32>, tensor<5x3xf32> -> tensor<5x64xf32>
  %g = llm.linear %x, %sg : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %u = llm.linear %x, %su : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %h = llm.glu silu %g, %u : tensor<5x64xf32>
  %s0 = llm.linear %h, %sd : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %s = arith.mulf %s0, %scale : tensor<5x64xf32>
  %y = arith.addf %r, %s : tensor<5x64xf32>
  return %y : tensor<5x64xf32>
}

// -----

// Dispatched rows used by something else stay unfused (the fused op does
// not materialize them).
// CHECK-LABEL: func.func @rows_escape
// CHECK-NOT: moe.fused_experts
// CHECK: moe.combine
func.func @rows_escape(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %y = moe.combine %out, %src, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return %y, %rows : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// W8A8: a shared expert whose inputs are quantized (its down input over its
// whole 64 columns, not per 32-wide slot) stays three linears beside the
// fused routed experts.
// CHECK-LABEL: func.func @w8a8_shared_stays
// CHECK: %[[R:.*]] = moe.fused_experts silu %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) activation_quant int8 :
// CHECK: llm.dynamic_quant int8
// CHECK: llm.glu
// CHECK: %[[HQ:.*]] = llm.dynamic_quant int8
// CHECK: %[[S:.*]] = llm.linear %[[HQ]]
// CHECK: arith.addf %[[S]], %[[R]]
func.func @w8a8_shared_stays(%x: tensor<5x64xf32>, %w: tensor<5x3xf32>, %ids: tensor<5x3xi32>) -> tensor<5x64xf32> {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<64x64xf32>
  %su = llm.weight "su" : tensor<64x64xf32>
  %sd = llm.weight "sd" : tensor<64x64xf32>
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : tensor<5x64xf32>, tensor<5x3xi32> -> tensor<15x64xf32>, tensor<9xi32>, tensor<15xi32>
  %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd activation_quant int8 : (tensor<15x64xf32>, tensor<9xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<15x64xf32>
  %r = moe.combine %out, %src, %w : tensor<15x64xf32>, tensor<15xi32>, tensor<5x3xf32> -> tensor<5x64xf32>
  %xq = llm.dynamic_quant int8 %x : tensor<5x64xf32>
  %g = llm.linear %xq, %sg precise : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %u = llm.linear %xq, %su precise : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %h = llm.glu silu %g, %u : tensor<5x64xf32>
  %hq = llm.dynamic_quant int8 %h : tensor<5x64xf32>
  %s = llm.linear %hq, %sd precise : (tensor<5x64xf32>, tensor<64x64xf32>) -> tensor<5x64xf32>
  %y = arith.addf %s, %r : tensor<5x64xf32>
  return %y : tensor<5x64xf32>
}
