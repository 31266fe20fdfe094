// RUN: moir-opt %s | moir-opt | FileCheck %s
// RUN: moir-opt %s --mlir-print-op-generic | moir-opt | FileCheck %s

// The four steps of a Mixtral MoE layer.
// CHECK-LABEL: func.func @mixtral_steps
func.func @mixtral_steps(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %logits = llm.linear %x, %wr : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
  // CHECK: moe.route %{{.*}} routing <top_k = 2, scoring = softmax, norm_topk_prob = true> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w, %ids = moe.route %logits routing <top_k = 2, scoring = softmax, norm_topk_prob = true> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  // CHECK: moe.dispatch %{{.*}}, %{{.*}} experts = 8 : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %rows, %offsets, %sources = moe.dispatch %x, %ids experts = 8 : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  %wg = llm.stacked_weight ["e0.w1", "e1.w1", "e2.w1", "e3.w1", "e4.w1", "e5.w1", "e6.w1", "e7.w1"] : tensor<8x96x64xf32>
  %wu = llm.stacked_weight ["e0.w3", "e1.w3", "e2.w3", "e3.w3", "e4.w3", "e5.w3", "e6.w3", "e7.w3"] : tensor<8x96x64xf32>
  %wd = llm.stacked_weight ["e0.w2", "e1.w2", "e2.w2", "e3.w2", "e4.w2", "e5.w2", "e6.w2", "e7.w2"] : tensor<8x64x96xf32>
  // CHECK: moe.expert_ffn silu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> tensor<?x64xf32>
  %y = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> tensor<?x64xf32>
  // CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  %out = moe.combine %y, %sources, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}

// DeepSeek-V3 routing: sigmoid scores, correction bias, 4 groups of 4, top-2
// groups, top-3 experts; static token count.
// CHECK-LABEL: func.func @deepseek_v3_route
func.func @deepseek_v3_route(%logits: tensor<5x16xf32>, %bias: tensor<16xf32>) -> (tensor<5x3xf32>, tensor<5x3xi32>) {
  // CHECK: moe.route %{{.*}} bias %{{.*}} routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.500000e+00 : f64> : tensor<5x16xf32>, tensor<16xf32> -> tensor<5x3xf32>, tensor<5x3xi32>
  %w, %ids = moe.route %logits bias %bias routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5> : tensor<5x16xf32>, tensor<16xf32> -> tensor<5x3xf32>, tensor<5x3xi32>
  return %w, %ids : tensor<5x3xf32>, tensor<5x3xi32>
}

// DeepSeek-V2 group-limited greedy routing.
// CHECK-LABEL: func.func @deepseek_v2_route
func.func @deepseek_v2_route(%logits: tensor<?x12xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  // CHECK: routing <top_k = 4, scoring = softmax, method = group_limited, n_group = 3, topk_group = 2, scaling = 1.600000e+01 : f64>
  %w, %ids = moe.route %logits routing <top_k = 4, scoring = softmax, method = group_limited, n_group = 3, topk_group = 2, scaling = 16.0> : tensor<?x12xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %ids : tensor<?x4xf32>, tensor<?x4xi32>
}

// Composite layers: Mixtral-like, Qwen2-MoE with a gated shared expert,
// DeepSeek-V3 with FP8 experts, bias-corrected routing and shared experts.
// CHECK-LABEL: func.func @layers
func.func @layers(%x: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>) {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %wg = llm.weight "gate_exps" : tensor<8x32x64xf32>
  %wu = llm.weight "up_exps" : tensor<8x32x64xf32>
  %wd = llm.weight "down_exps" : tensor<8x64x32xf32>
  // CHECK: moe.layer %{{.*}} router %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) routing <top_k = 2, scoring = softmax, norm_topk_prob = true> activation silu : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %a = moe.layer %x router %wr experts(%wg, %wu, %wd) routing <top_k = 2, scoring = softmax, norm_topk_prob = true> activation silu : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>

  %sg = llm.weight "shared_expert.gate_proj" : tensor<48x64xf32>
  %su = llm.weight "shared_expert.up_proj" : tensor<48x64xf32>
  %sd = llm.weight "shared_expert.down_proj" : tensor<64x48xf32>
  %sgate = llm.weight "shared_expert_gate" : tensor<1x64xf32>
  // CHECK: moe.layer %{{.*}} router %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) shared(%{{.*}}, %{{.*}}, %{{.*}}) shared_gate %{{.*}} routing <top_k = 4, scoring = softmax> activation silu
  %b = moe.layer %x router %wr experts(%wg, %wu, %wd) shared(%sg, %su, %sd) shared_gate %sgate routing <top_k = 4, scoring = softmax> activation silu : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>

  %bias = llm.weight "e_score_correction_bias" : tensor<8xf32>
  %qg = llm.weight "fp8_gate" scales "fp8_gate_s" : !llm.qtensor<8x32x64xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>
  %qu = llm.weight "fp8_up" scales "fp8_up_s" : !llm.qtensor<8x32x64xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>
  %qd = llm.weight "fp8_down" scales "fp8_down_s" : !llm.qtensor<8x64x32xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>
  // CHECK: moe.layer %{{.*}} router %{{.*}} bias %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) shared(%{{.*}}, %{{.*}}, %{{.*}}) routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.500000e+00 : f64> activation silu
  %c = moe.layer %x router %wr bias %bias experts(%qg, %qu, %qd) shared(%sg, %su, %sd) routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5> activation silu : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32>, !llm.qtensor<8x32x64xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>, !llm.qtensor<8x32x64xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>, !llm.qtensor<8x64x32xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return %a, %b, %c : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>
}

// CHECK-LABEL: func.func @fused_experts
func.func @fused_experts(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %sg = llm.weight "sg" : tensor<64x64xf32>
  %su = llm.weight "su" : tensor<64x64xf32>
  %sd = llm.weight "sd" : tensor<64x64xf32>
  // CHECK: moe.fused_experts silu %{{.*}}, %{{.*}}, %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) :
  %a = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  // CHECK: moe.fused_experts silu %{{.*}}, %{{.*}}, %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) shared(%{{.*}}, %{{.*}}, %{{.*}}) :
  %b = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) shared(%sg, %su, %sd) : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>) -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

// CHECK-LABEL: func.func @fused_route
func.func @fused_route(%x: tensor<?x64xf32>) -> (tensor<?x2xf32>, tensor<?x3xi32>) {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %b = llm.weight "bias" : tensor<8xf32>
  // CHECK: moe.fused_route %{{.*}}, %{{.*}} routing <top_k = 2, scoring = softmax> : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w, %ids = moe.fused_route %x, %wr routing <top_k = 2, scoring = softmax> : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  // CHECK: moe.fused_route %{{.*}}, %{{.*}} bias %{{.*}} routing
  %w3, %ids3 = moe.fused_route %x, %wr bias %b routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2> : tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return %w, %ids3 : tensor<?x2xf32>, tensor<?x3xi32>
}

// CHECK-LABEL: func.func @input_order
func.func @input_order(%rows: tensor<?x64xf32>, %offsets: tensor<9xi32>, %wg: tensor<8x96x64xf32>, %wd: tensor<8x64x96xf32>, %order: tensor<8x64xi32>) -> tensor<?x64xf32> {
  // CHECK: moe.expert_ffn silu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} input_order %{{.*}} : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>, tensor<8x64xi32>) -> tensor<?x64xf32>
  %y = moe.expert_ffn silu %rows, %offsets, %wg, %wg, %wd input_order %order : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>, tensor<8x64xi32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// W8A8 experts: activation_quant round-trips on the expert ops.
// CHECK-LABEL: func.func @activation_quant
func.func @activation_quant(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %rows: tensor<?x64xf32>, %offsets: tensor<9xi32>, %wg: tensor<8x96x64xf32>, %wd: tensor<8x64x96xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  // CHECK: moe.expert_ffn silu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} activation_quant int8 :
  %y = moe.expert_ffn silu %rows, %offsets, %wg, %wg, %wd activation_quant int8 : (tensor<?x64xf32>, tensor<9xi32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> tensor<?x64xf32>
  // CHECK: moe.fused_experts silu %{{.*}}, %{{.*}}, %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) activation_quant fp8_e4m3 :
  %z = moe.fused_experts silu %x, %ids, %w experts(%wg, %wg, %wd) activation_quant fp8_e4m3 : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> tensor<?x64xf32>
  return %y, %z : tensor<?x64xf32>, tensor<?x64xf32>
}
