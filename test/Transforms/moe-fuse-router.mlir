// RUN: moir-opt %s -moe-fuse-router -split-input-file | FileCheck %s

// The router product feeding the routing becomes one op.
// CHECK-LABEL: func.func @softmax_topk
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>)
// CHECK: %[[WR:.*]] = llm.weight "router"
// CHECK-NOT: llm.linear
// CHECK: %[[W:.*]], %[[IDS:.*]] = moe.fused_route %[[X]], %[[WR]] routing <top_k = 2, scoring = softmax, norm_topk_prob = true> : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK-NEXT: return %[[W]], %[[IDS]]
func.func @softmax_topk(%x: tensor<?x64xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %l = llm.linear %x, %wr precise : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
  %w, %ids = moe.route %l routing <top_k = 2, scoring = softmax, norm_topk_prob = true> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// DeepSeek-V3 routing keeps its correction bias and group-limited top-k.
// CHECK-LABEL: func.func @noaux_tc
// CHECK: %[[B:.*]] = llm.weight "bias"
// CHECK: moe.fused_route %{{.*}}, %{{.*}} bias %[[B]] routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.500000e+00 : f64> : tensor<5x64xf32>, tensor<16x64xbf16>, tensor<16xf32> -> tensor<5x3xf32>, tensor<5x3xi32>
func.func @noaux_tc(%x: tensor<5x64xf32>) -> (tensor<5x3xf32>, tensor<5x3xi32>) {
  %wr = llm.weight "router" : tensor<16x64xbf16>
  %b = llm.weight "bias" : tensor<16xf32>
  %l = llm.linear %x, %wr : (tensor<5x64xf32>, tensor<16x64xbf16>) -> tensor<5x16xf32>
  %w, %ids = moe.route %l bias %b routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5> : tensor<5x16xf32>, tensor<16xf32> -> tensor<5x3xf32>, tensor<5x3xi32>
  return %w, %ids : tensor<5x3xf32>, tensor<5x3xi32>
}

// -----

// Logits used elsewhere (here: returned) stay a separate product.
// CHECK-LABEL: func.func @logits_escape
// CHECK-NOT: moe.fused_route
// CHECK: llm.linear
// CHECK: moe.route
func.func @logits_escape(%x: tensor<?x64xf32>) -> (tensor<?x2xf32>, tensor<?x8xf32>) {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %l = llm.linear %x, %wr : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
  %w, %ids = moe.route %l routing <top_k = 2, scoring = softmax> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %l : tensor<?x2xf32>, tensor<?x8xf32>
}

// -----

// A router with a bias term is not the plain product the fused op reads.
// CHECK-LABEL: func.func @biased_router
// CHECK-NOT: moe.fused_route
// CHECK: moe.route
func.func @biased_router(%x: tensor<?x64xf32>, %bb: tensor<8xf32>) -> tensor<?x2xi32> {
  %wr = llm.weight "router" : tensor<8x64xf32>
  %l = llm.linear %x, %wr, %bb : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %w, %ids = moe.route %l routing <top_k = 2, scoring = softmax> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %ids : tensor<?x2xi32>
}
