// RUN: moir-opt %s -canonicalize -split-input-file | FileCheck %s

// Selecting every group is no group limit: group_limited becomes greedy.
// CHECK-LABEL: func.func @all_groups_is_greedy
// CHECK: moe.route %{{.*}} routing <top_k = 4, scoring = softmax, scaling = 1.600000e+01 : f64>
func.func @all_groups_is_greedy(%l: tensor<?x12xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %i = moe.route %l routing <top_k = 4, scoring = softmax, method = group_limited, n_group = 3, topk_group = 3, scaling = 16.0> : tensor<?x12xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %i : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// noaux_tc keeps its bias-corrected selection but drops the trivial groups.
// CHECK-LABEL: func.func @all_groups_noaux_tc
// CHECK: moe.route %{{.*}} bias %{{.*}} routing <top_k = 2, scoring = sigmoid, method = noaux_tc, norm_topk_prob = true>
func.func @all_groups_noaux_tc(%l: tensor<?x8xf32>, %b: tensor<8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %i = moe.route %l bias %b routing <top_k = 2, scoring = sigmoid, method = noaux_tc, n_group = 2, topk_group = 2, norm_topk_prob = true> : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %i : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// A real group limit stays.
// CHECK-LABEL: func.func @real_group_limit
// CHECK: routing <top_k = 4, scoring = softmax, method = group_limited, n_group = 3, topk_group = 2>
func.func @real_group_limit(%l: tensor<?x12xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %i = moe.route %l routing <top_k = 4, scoring = softmax, method = group_limited, n_group = 3, topk_group = 2> : tensor<?x12xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %i : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// Grouped expert FFNs read FP8 expert weights directly.
// CHECK-LABEL: func.func @expert_ffn_reads_quantized
// CHECK-NOT: llm.dequantize
// CHECK: moe.expert_ffn silu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x128xf32>, tensor<3xi32>, !llm.qtensor<2x128x128xf8E4M3FN
func.func @expert_ffn_reads_quantized(%r: tensor<?x128xf32>, %o: tensor<3xi32>) -> tensor<?x128xf32> {
  %q = llm.weight "w" scales "s" : !llm.qtensor<2x128x128xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>
  %w = llm.dequantize %q : !llm.qtensor<2x128x128xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>> -> tensor<2x128x128xf32>
  %y = moe.expert_ffn silu %r, %o, %w, %w, %w : (tensor<?x128xf32>, tensor<3xi32>, tensor<2x128x128xf32>, tensor<2x128x128xf32>, tensor<2x128x128xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// The composite layer too, for its router and expert weights.
// CHECK-LABEL: func.func @layer_reads_quantized
// CHECK-NOT: llm.dequantize
// CHECK: moe.layer %{{.*}} router %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) routing <top_k = 1, scoring = softmax> activation silu : (tensor<?x32xf32>, !llm.qtensor<2x32xi8, {{.*}}>, !llm.qtensor<2x32x32xi8, {{.*}}>, !llm.qtensor<2x32x32xi8, {{.*}}>, !llm.qtensor<2x32x32xi8, {{.*}}>)
func.func @layer_reads_quantized(%x: tensor<?x32xf32>) -> tensor<?x32xf32> {
  %qr = llm.weight "r" : !llm.qtensor<2x32xi8, #llm.quant<kind = gguf, format = q8_0>>
  %qe = llm.weight "e" : !llm.qtensor<2x32x32xi8, #llm.quant<kind = gguf, format = q8_0>>
  %r = llm.dequantize %qr : !llm.qtensor<2x32xi8, #llm.quant<kind = gguf, format = q8_0>> -> tensor<2x32xf32>
  %e = llm.dequantize %qe : !llm.qtensor<2x32x32xi8, #llm.quant<kind = gguf, format = q8_0>> -> tensor<2x32x32xf32>
  %y = moe.layer %x router %r experts(%e, %e, %e) routing <top_k = 1, scoring = softmax> activation silu : (tensor<?x32xf32>, tensor<2x32xf32>, tensor<2x32x32xf32>, tensor<2x32x32xf32>, tensor<2x32x32xf32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
