// RUN: moir-opt %s -moe-decompose-layer -split-input-file | FileCheck %s --implicit-check-not=moe.layer

// A Mixtral layer becomes router linear, route, dispatch, grouped FFN, combine.
// CHECK-LABEL: func.func @mixtral
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>)
// CHECK: %[[WR:.*]] = llm.weight "router"
// CHECK: %[[WG:.*]] = llm.weight "gate"
// CHECK: %[[WU:.*]] = llm.weight "up"
// CHECK: %[[WD:.*]] = llm.weight "down"
// CHECK: %[[L:.*]] = llm.linear %[[X]], %[[WR]] precise : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
// CHECK: %[[W:.*]], %[[IDS:.*]] = moe.route %[[L]] routing <top_k = 2, scoring = softmax, norm_topk_prob = true> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: %[[ROWS:.*]], %[[OFF:.*]], %[[SRC:.*]] = moe.dispatch %[[X]], %[[IDS]] experts = 8 : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
// CHECK: %[[Y:.*]] = moe.expert_ffn silu %[[ROWS]], %[[OFF]], %[[WG]], %[[WU]], %[[WD]]
// CHECK: %[[OUT:.*]] = moe.combine %[[Y]], %[[SRC]], %[[W]] : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
// CHECK: return %[[OUT]]
func.func @mixtral(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %y = moe.layer %x router %wr experts(%wg, %wu, %wd) routing <top_k = 2, scoring = softmax, norm_topk_prob = true> activation silu : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// DeepSeek-V3: the correction bias reaches the route; the shared expert is
// a dense SwiGLU FFN added to the routed result. Static token count: the
// dispatch has 5 x 3 rows.
// CHECK-LABEL: func.func @deepseek_v3
// CHECK-SAME: (%[[X:.*]]: tensor<5x64xf32>)
// CHECK: %[[B:.*]] = llm.weight "bias"
// CHECK: moe.route %{{.*}} bias %[[B]] routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.500000e+00 : f64> : tensor<5x8xf32>, tensor<8xf32> -> tensor<5x3xf32>, tensor<5x3xi32>
// CHECK: moe.dispatch {{.*}} -> tensor<15x64xf32>, tensor<9xi32>, tensor<15xi32>
// CHECK: %[[ROUTED:.*]] = moe.combine
// CHECK: %[[G:.*]] = llm.linear %[[X]], %{{.*}} : (tensor<5x64xf32>, tensor<48x64xf32>) -> tensor<5x48xf32>
// CHECK: %[[U:.*]] = llm.linear %[[X]], %{{.*}} : (tensor<5x64xf32>, tensor<48x64xf32>) -> tensor<5x48xf32>
// CHECK: %[[H:.*]] = llm.glu silu %[[G]], %[[U]] : tensor<5x48xf32>
// CHECK: %[[S:.*]] = llm.linear %[[H]], %{{.*}} : (tensor<5x48xf32>, tensor<64x48xf32>) -> tensor<5x64xf32>
// CHECK: %[[SUM:.*]] = arith.addf %[[ROUTED]], %[[S]] : tensor<5x64xf32>
// CHECK: return %[[SUM]]
func.func @deepseek_v3(%x: tensor<5x64xf32>) -> tensor<5x64xf32> {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %b = llm.weight "bias" : tensor<8xf32>
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<48x64xf32>
  %su = llm.weight "su" : tensor<48x64xf32>
  %sd = llm.weight "sd" : tensor<64x48xf32>
  %y = moe.layer %x router %wr bias %b experts(%wg, %wu, %wd) shared(%sg, %su, %sd) routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5> activation silu : (tensor<5x64xf32>, tensor<8x64xf32>, tensor<8xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<5x64xf32>
  return %y : tensor<5x64xf32>
}

// -----

// Qwen2-MoE: the shared expert is scaled per token by sigmoid(x * gate^T).
// CHECK-LABEL: func.func @qwen2_moe
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>)
// CHECK: %[[ROUTED:.*]] = moe.combine
// CHECK: %[[S:.*]] = llm.linear %{{.*}}, %{{.*}} : (tensor<?x48xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
// CHECK: %[[GL:.*]] = llm.linear %[[X]], %{{.*}} : (tensor<?x64xf32>, tensor<1x64xf32>) -> tensor<?x1xf32>
// CHECK: %[[SIG:.*]] = llm.activation sigmoid %[[GL]] : tensor<?x1xf32>
// CHECK: %[[COL:.*]] = tensor.collapse_shape %[[SIG]] {{\[\[}}0, 1]] : tensor<?x1xf32> into tensor<?xf32>
// CHECK: %[[BC:.*]] = linalg.broadcast ins(%[[COL]] : tensor<?xf32>) outs(%{{.*}} : tensor<?x64xf32>) dimensions = [1]
// CHECK: %[[GATED:.*]] = arith.mulf %[[S]], %[[BC]] : tensor<?x64xf32>
// CHECK: arith.addf %[[ROUTED]], %[[GATED]] : tensor<?x64xf32>
func.func @qwen2_moe(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<48x64xf32>
  %su = llm.weight "su" : tensor<48x64xf32>
  %sd = llm.weight "sd" : tensor<64x48xf32>
  %gate = llm.weight "shared_expert_gate" : tensor<1x64xf32>
  %y = moe.layer %x router %wr experts(%wg, %wu, %wd) shared(%sg, %su, %sd) shared_gate %gate routing <top_k = 4, scoring = softmax> activation silu : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// W8A8 with a shared expert (activation_quant): the routed experts quantize
// their rows (moe.expert_ffn), the shared expert its inputs as three
// linears would: x once for gate and up, the activated rows over its whole
// width for down; fp8 products are not marked precise. The router and the
// shared gate read x as it is.
// CHECK-LABEL: func.func @w8a8_shared
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>)
// CHECK: llm.linear %[[X]], %{{.*}} precise : (tensor<?x64xf32>, tensor<8x64xf32>)
// CHECK: moe.expert_ffn {{.*}} activation_quant fp8_e4m3
// CHECK: %[[ROUTED:.*]] = moe.combine
// CHECK: %[[XQ:.*]] = llm.dynamic_quant fp8_e4m3 %[[X]] : tensor<?x64xf32>
// CHECK: %[[G:.*]] = llm.linear %[[XQ]], %{{.*}} : (tensor<?x64xf32>, tensor<48x64xf32>) -> tensor<?x48xf32>
// CHECK: %[[U:.*]] = llm.linear %[[XQ]], %{{.*}} : (tensor<?x64xf32>, tensor<48x64xf32>) -> tensor<?x48xf32>
// CHECK: %[[H:.*]] = llm.glu silu %[[G]], %[[U]]
// CHECK: %[[HQ:.*]] = llm.dynamic_quant fp8_e4m3 %[[H]] : tensor<?x48xf32>
// CHECK: %[[S:.*]] = llm.linear %[[HQ]], %{{.*}} : (tensor<?x48xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
// CHECK: llm.linear %[[X]], %{{.*}} : (tensor<?x64xf32>, tensor<1x64xf32>) -> tensor<?x1xf32>
func.func @w8a8_shared(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<48x64xf32>
  %su = llm.weight "su" : tensor<48x64xf32>
  %sd = llm.weight "sd" : tensor<64x48xf32>
  %gate = llm.weight "shared_expert_gate" : tensor<1x64xf32>
  %y = moe.layer %x router %wr experts(%wg, %wu, %wd) shared(%sg, %su, %sd) shared_gate %gate routing <top_k = 4, scoring = softmax> activation silu activation_quant fp8_e4m3 : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
