// RUN: moir-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{top_k must be >= 1, got 0}}
func.func private @f() attributes {r = #moe.routing<top_k = 0, scoring = softmax>}

// -----

// expected-error @+1 {{n_group must be >= 1, got 0}}
func.func private @f() attributes {r = #moe.routing<top_k = 2, scoring = softmax, method = group_limited, n_group = 0>}

// -----

// expected-error @+1 {{topk_group must be in [1, n_group = 4], got 5}}
func.func private @f() attributes {r = #moe.routing<top_k = 2, scoring = softmax, method = group_limited, n_group = 4, topk_group = 5>}

// -----

// expected-error @+1 {{greedy routing takes no expert groups (n_group = 4)}}
func.func private @f() attributes {r = #moe.routing<top_k = 2, scoring = softmax, n_group = 4, topk_group = 2>}

// -----

// expected-error @+1 {{routed scaling factor must be positive}}
func.func private @f() attributes {r = #moe.routing<top_k = 2, scoring = softmax, scaling = 0.0>}

// -----

func.func @f(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{top_k 10 exceeds the number of experts 8}}
  %w, %i = moe.route %l routing <top_k = 10, scoring = softmax> : tensor<?x8xf32> -> tensor<?x10xf32>, tensor<?x10xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{8 experts do not split into n_group = 3 equal groups}}
  %w, %i = moe.route %l routing <top_k = 2, scoring = softmax, method = group_limited, n_group = 3, topk_group = 2> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{topk_group = 1 groups of 2 experts cannot supply top_k = 3}}
  %w, %i = moe.route %l routing <top_k = 3, scoring = softmax, method = group_limited, n_group = 4, topk_group = 1> : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{noaux_tc scores groups by their two best experts; groups of 1 are too small}}
  %w, %i = moe.route %l bias %b routing <top_k = 2, scoring = sigmoid, method = noaux_tc, n_group = 8, topk_group = 4> : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @f(%l: tensor<8xf32>) {
  // expected-error @+1 {{logits must have rank 2}}
  %w, %i = moe.route %l routing <top_k = 2, scoring = softmax> : tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @f(%l: tensor<?x?xf32>) {
  // expected-error @+1 {{the number of experts (logits dimension 1) must be static}}
  %w, %i = moe.route %l routing <top_k = 2, scoring = softmax> : tensor<?x?xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{weights and ids must have the same shape}}
  %w, %i = moe.route %l routing <top_k = 2, scoring = softmax> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<3x2xi32>
  return
}

// -----

func.func @f(%l: tensor<3x8xf32>) {
  // expected-error @+1 {{weights token dimension is 4, expected 3}}
  %w, %i = moe.route %l routing <top_k = 2, scoring = softmax> : tensor<3x8xf32> -> tensor<4x2xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{weights top-k dimension is 3, expected 2}}
  %w, %i = moe.route %l routing <top_k = 2, scoring = softmax> : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{noaux_tc routing needs the correction bias}}
  %w, %i = moe.route %l routing <top_k = 2, scoring = sigmoid, method = noaux_tc, n_group = 2, topk_group = 1> : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{correction bias given but routing method is not noaux_tc}}
  %w, %i = moe.route %l bias %b routing <top_k = 2, scoring = sigmoid> : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @f(%l: tensor<?x8xf32>, %b: tensor<6xf32>) {
  // expected-error @+1 {{correction bias size is 6, expected 8}}
  %w, %i = moe.route %l bias %b routing <top_k = 2, scoring = sigmoid, method = noaux_tc, n_group = 2, topk_group = 1> : tensor<?x8xf32>, tensor<6xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{needs at least one expert}}
  %r, %o, %s = moe.dispatch %x, %i experts = 0 : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<1xi32>, tensor<?xi32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{rows must have the input's element type}}
  %r, %o, %s = moe.dispatch %x, %i experts = 4 : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf16>, tensor<5xi32>, tensor<?xi32>
  return
}

// -----

func.func @f(%x: tensor<3x16xf32>, %i: tensor<3x2xi32>) {
  // expected-error @+1 {{rows count is 5, expected 6}}
  %r, %o, %s = moe.dispatch %x, %i experts = 4 : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<5x16xf32>, tensor<5xi32>, tensor<5xi32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{offsets size is 4, expected 5}}
  %r, %o, %s = moe.dispatch %x, %i experts = 4 : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<4xi32>, tensor<?xi32>
  return
}

// -----

func.func @f(%x: tensor<3x16xf32>, %i: tensor<3x2xi32>) {
  // expected-error @+1 {{sources size is 7, expected 6}}
  %r, %o, %s = moe.dispatch %x, %i experts = 4 : tensor<3x16xf32>, tensor<3x2xi32> -> tensor<6x16xf32>, tensor<5xi32>, tensor<7xi32>
  return
}

// -----

func.func @f(%x: tensor<3x16xf32>, %i: tensor<2x2xi32>) {
  // expected-error @+1 {{ids token dimension is 2, expected 3}}
  %r, %o, %s = moe.dispatch %x, %i experts = 4 : tensor<3x16xf32>, tensor<2x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %g: tensor<4x24x16xf32>, %u: tensor<4x20x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expert gate and up weights must have the same shape}}
  %y = moe.expert_ffn silu %r, %o, %g, %u, %d : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x20x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %g: tensor<4x24x12xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expert gate hidden dimension is 12, expected 16}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x24x12xf32>, tensor<4x24x12xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %g: tensor<4x24x16xf32>, %d: tensor<3x16x24xf32>) {
  // expected-error @+1 {{expert down experts is 3, expected 4}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<3x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %g: tensor<4x24x16xf32>, %d: tensor<4x8x24xf32>) {
  // expected-error @+1 {{expert down output dimension is 8, expected 16}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x8x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x20xf32>) {
  // expected-error @+1 {{expert down ffn dimension is 20, expected 24}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x20xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %g: tensor<24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expert gate weight must have rank 3}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d : (tensor<?x16xf32>, tensor<5xi32>, tensor<24x16xf32>, tensor<24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %o: tensor<4xi32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{offsets size is 4, expected 5}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%r: tensor<6x16xf32>, %o: tensor<5xi32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{result rows is 5, expected 6}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d : (tensor<6x16xf32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<5x16xf32>
  return
}

// -----

func.func @f(%r: tensor<6x16xf32>, %s: tensor<5xi32>, %w: tensor<3x2xf32>) {
  // expected-error @+1 {{sources size is 5, expected 6}}
  %y = moe.combine %r, %s, %w : tensor<6x16xf32>, tensor<5xi32>, tensor<3x2xf32> -> tensor<3x16xf32>
  return
}

// -----

func.func @f(%r: tensor<6x16xf32>, %s: tensor<6xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{rows count is 6, expected 8}}
  %y = moe.combine %r, %s, %w : tensor<6x16xf32>, tensor<6xi32>, tensor<4x2xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %s: tensor<?xi32>, %w: tensor<3x2xf32>) {
  // expected-error @+1 {{result tokens is 4, expected 3}}
  %y = moe.combine %r, %s, %w : tensor<?x16xf32>, tensor<?xi32>, tensor<3x2xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @f(%r: tensor<?x16xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{result hidden dimension is 8, expected 16}}
  %y = moe.combine %r, %s, %w : tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{result type must equal the input type}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<3x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x12xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{router hidden dimension is 12, expected 16}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x12xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<6x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{router experts is 6, expected 4}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<6x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{top_k 5 exceeds the number of experts 4}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) routing <top_k = 5, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{noaux_tc routing needs the correction bias}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) routing <top_k = 2, scoring = sigmoid, method = noaux_tc, n_group = 2, topk_group = 1> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{correction bias size is 5, expected 4}}
  %y = moe.layer %x router %wr bias %b experts(%g, %g, %d) routing <top_k = 2, scoring = sigmoid, method = noaux_tc, n_group = 2, topk_group = 1> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<5xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %sg: tensor<1x16xf32>) {
  // expected-error @+1 {{shared_gate needs a shared expert}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) shared_gate %sg routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<1x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %a: tensor<8x16xf32>, %b: tensor<6x16xf32>, %c: tensor<16x8xf32>) {
  // expected-error @+1 {{shared gate and up weights must have the same shape}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) shared(%a, %b, %c) routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<8x16xf32>, tensor<6x16xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %a: tensor<8x12xf32>, %c: tensor<16x8xf32>) {
  // expected-error @+1 {{shared gate hidden dimension is 12, expected 16}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) shared(%a, %a, %c) routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<8x12xf32>, tensor<8x12xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %a: tensor<8x16xf32>, %c: tensor<12x8xf32>) {
  // expected-error @+1 {{shared down output dimension is 12, expected 16}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) shared(%a, %a, %c) routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<12x8xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %a: tensor<8x16xf32>, %c: tensor<16x6xf32>) {
  // expected-error @+1 {{shared down ffn dimension is 6, expected 8}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) shared(%a, %a, %c) routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<16x6xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %a: tensor<8x16xf32>, %c: tensor<16x8xf32>, %sg: tensor<2x16xf32>) {
  // expected-error @+1 {{shared_gate outputs is 2, expected 1}}
  %y = moe.layer %x router %wr experts(%g, %g, %d) shared(%a, %a, %c) shared_gate %sg routing <top_k = 2, scoring = softmax> activation silu : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<8x16xf32>, tensor<8x16xf32>, tensor<16x8xf32>, tensor<2x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x3xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>) {
  // expected-error @+1 {{weights top-k is 3, expected 2}}
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %g, %d) : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x3xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %a: tensor<36x16xf32>, %c: tensor<16x36xf32>) {
  // expected-error @+1 {{shared expert FFN width (36) must be a multiple of the routed experts' (24)}}
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %g, %d) shared(%a, %a, %c) : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<36x16xf32>, tensor<36x16xf32>, tensor<16x36xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @f(%x: tensor<?x16xf32>, %wr: tensor<4x32xf32>) {
  // expected-error @+1 {{router hidden dimension is 32, expected 16}}
  %w, %ids = moe.fused_route %x, %wr routing <top_k = 2, scoring = softmax> : tensor<?x16xf32>, tensor<4x32xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

// An input order for another number of experts.
func.func @f(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %order: tensor<3x16xi32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{input_order experts}}
  %y = moe.expert_ffn silu %r, %o, %g, %g, %d input_order %order : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<3x16xi32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// The fused op quantizes the routed experts' inputs only (a W8A8 shared
// expert stays three linears: its down input is quantized over its whole width).
func.func @f(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %g: tensor<4x24x16xf32>, %d: tensor<4x16x24xf32>, %a: tensor<48x16xf32>, %c: tensor<16x48xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{activation_quant applies to routed experts only}}
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %g, %d) shared(%a, %a, %c) activation_quant int8 : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<48x16xf32>, tensor<48x16xf32>, tensor<16x48xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
