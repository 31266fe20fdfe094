// RUN: moir-opt %s -llm-tensor-parallel="ranks=2 rank=1" -split-input-file -verify-diagnostics | FileCheck %s
// RUN: moir-opt %s -llm-tensor-parallel="ranks=2 rank=0" -split-input-file -verify-diagnostics | FileCheck %s --check-prefix=RANK0

// A decoder layer: 4 query heads reading 2 KV heads (head dim 8), q/k
// norms, an FFN of 96 columns and an untied LM head of 130 rows. Rank 1 of 2
// keeps KV head 1 and query heads 2-3: the rows of those heads in q/k/v, its
// KV caches shrink to one head, and every split output is gathered.
// CHECK-LABEL: func.func @layer
// CHECK-SAME: %[[KC:[a-z0-9]+]]: tensor<64x1x8xf32>, %[[VC:[a-z0-9]+]]: tensor<64x1x8xf32>
// CHECK-SAME: -> (tensor<?x130xf32>, tensor<64x1x8xf32>, tensor<64x1x8xf32>)
// CHECK-DAG: llm.weight "q[rows=16:32]" : tensor<16x32xf32>
// CHECK-DAG: llm.weight "qb[rows=16:32]" : tensor<16xf32>
// CHECK-DAG: llm.weight "k[rows=8:16]" : tensor<8x32xf32>
// CHECK-DAG: llm.weight "v[rows=8:16]" : tensor<8x32xf32>
// CHECK: llm.rms_norm {{.*}} : tensor<?x2x8xf32>, tensor<8xf32>
// CHECK: llm.kv_cache_update {{.*}} : tensor<?x1x8xf32> into tensor<64x1x8xf32>
// CHECK: %[[A:.*]] = llm.attention {{.*}} -> tensor<?x2x8xf32>
// CHECK: %[[F:.*]] = tensor.collapse_shape %[[A]] {{.*}} into tensor<?x16xf32>
// CHECK: %[[H:.*]] = llm.all_gather %[[F]] unit = 16 rank = 1 ranks = 2 : tensor<?x16xf32> -> tensor<?x32xf32>
// CHECK: %[[OW:.*]] = llm.weight "o[rows=16:32]" : tensor<16x32xf32>
// CHECK: %[[O:.*]] = llm.linear %[[H]], %[[OW]]
// CHECK: llm.all_gather %[[O]] unit = 4 rank = 1 ranks = 2 : tensor<?x16xf32> -> tensor<?x32xf32>
// The FFN: 96 columns in units of 8 (at least 4 per rank), rank 1 gets
// units 6-11 (columns 48-95).
// CHECK-DAG: llm.weight "gate[rows=48:96]" : tensor<48x32xf32>
// CHECK-DAG: llm.weight "up[rows=48:96]" : tensor<48x32xf32>
// CHECK: %[[G:.*]] = llm.glu silu {{.*}} : tensor<?x48xf32>
// CHECK: %[[GA:.*]] = llm.all_gather %[[G]] unit = 8 rank = 1 ranks = 2 : tensor<?x48xf32> -> tensor<?x96xf32>
// CHECK: %[[DW:.*]] = llm.weight "down[rows=16:32]" : tensor<16x96xf32>
// CHECK: llm.linear %[[GA]], %[[DW]]
// The LM head: 130 rows in units of 16 (the last of 2 rows): rank 1 gets
// units 4-8, rows 64-129.
// CHECK: llm.weight "head[rows=64:130]" : tensor<66x32xf32>
// CHECK: %[[L:.*]] = llm.all_gather %{{.*}} unit = 16 rank = 1 ranks = 2 : tensor<?x66xf32> -> tensor<?x130xf32>
// CHECK: return %[[L]]
// RANK0-LABEL: func.func @layer
// RANK0-DAG: llm.weight "q[rows=0:16]" : tensor<16x32xf32>
// RANK0-DAG: llm.weight "k[rows=0:8]" : tensor<8x32xf32>
// RANK0-DAG: llm.weight "gate[rows=0:48]" : tensor<48x32xf32>
// RANK0: llm.weight "head[rows=0:64]" : tensor<64x32xf32>
func.func @layer(%x: tensor<?x32xf32>, %pos: tensor<?xi64>, %off: index, %kc: tensor<64x2x8xf32>, %vc: tensor<64x2x8xf32>) -> (tensor<?x130xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>) {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x32xf32>
  %wq = llm.weight "q" : tensor<32x32xf32>
  %bq = llm.weight "qb" : tensor<32xf32>
  %wk = llm.weight "k" : tensor<16x32xf32>
  %wv = llm.weight "v" : tensor<16x32xf32>
  %qn = llm.weight "qn" : tensor<8xf32>
  %q = llm.linear %x, %wq, %bq : (tensor<?x32xf32>, tensor<32x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %k = llm.linear %x, %wk : (tensor<?x32xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  %v = llm.linear %x, %wv : (tensor<?x32xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  %q3 = tensor.expand_shape %q [[0], [1, 2]] output_shape [%t, 4, 8] : tensor<?x32xf32> into tensor<?x4x8xf32>
  %k3 = tensor.expand_shape %k [[0], [1, 2]] output_shape [%t, 2, 8] : tensor<?x16xf32> into tensor<?x2x8xf32>
  %v3 = tensor.expand_shape %v [[0], [1, 2]] output_shape [%t, 2, 8] : tensor<?x16xf32> into tensor<?x2x8xf32>
  %qnorm = llm.rms_norm %q3, %qn epsilon = 1.0e-06 : tensor<?x4x8xf32>, tensor<8xf32>
  %qr = llm.rope %qnorm, %pos with <theta = 10000.0 : f64, dim = 8> : tensor<?x4x8xf32>, tensor<?xi64>
  %kr = llm.rope %k3, %pos with <theta = 10000.0 : f64, dim = 8> : tensor<?x2x8xf32>, tensor<?xi64>
  %kc2 = llm.kv_cache_update %kr into %kc[%off] : tensor<?x2x8xf32> into tensor<64x2x8xf32>
  %vc2 = llm.kv_cache_update %v3 into %vc[%off] : tensor<?x2x8xf32> into tensor<64x2x8xf32>
  %a = llm.attention %qr, %kc2, %vc2, %pos scale = 0.35 : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
  %flat = tensor.collapse_shape %a [[0], [1, 2]] : tensor<?x4x8xf32> into tensor<?x32xf32>
  %wo = llm.weight "o" : tensor<32x32xf32>
  %o = llm.linear %flat, %wo : (tensor<?x32xf32>, tensor<32x32xf32>) -> tensor<?x32xf32>
  %h = arith.addf %x, %o : tensor<?x32xf32>
  %wg = llm.weight "gate" : tensor<96x32xf32>
  %wu = llm.weight "up" : tensor<96x32xf32>
  %wd = llm.weight "down" : tensor<32x96xf32>
  %g = llm.linear %h, %wg : (tensor<?x32xf32>, tensor<96x32xf32>) -> tensor<?x96xf32>
  %u = llm.linear %h, %wu : (tensor<?x32xf32>, tensor<96x32xf32>) -> tensor<?x96xf32>
  %gu = llm.glu silu %g, %u : tensor<?x96xf32>
  %d = llm.linear %gu, %wd : (tensor<?x96xf32>, tensor<32x96xf32>) -> tensor<?x32xf32>
  %y = arith.addf %h, %d : tensor<?x32xf32>
  %wh = llm.weight "head" : tensor<130x32xf32>
  %logits = llm.linear %y, %wh : (tensor<?x32xf32>, tensor<130x32xf32>) -> tensor<?x130xf32>
  return %logits, %kc2, %vc2 : tensor<?x130xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>
}

// -----

// W8A8: every linear's input is whole on every rank, so its quantization
// (dynamic per row, or static with a stored scale) is the 1-rank one. The
// heads and the FFN's columns are gathered in front of o_proj's and down's
// quantizations; the shared dynamic quantization of x stays in front of the
// split q/k/v and gate/up.
// CHECK-LABEL: func.func @w8a8
// CHECK: %[[XQ:.*]] = llm.dynamic_quant int8 %{{.*}} : tensor<?x32xf32>
// CHECK: llm.linear %[[XQ]], %{{.*}} -> tensor<?x16xf32>
// CHECK: %[[A:.*]] = llm.attention {{.*}} -> tensor<?x2x8xf32>
// CHECK: %[[F:.*]] = tensor.collapse_shape %[[A]] {{.*}} into tensor<?x16xf32>
// CHECK: %[[H:.*]] = llm.all_gather %[[F]] unit = 16 rank = 1 ranks = 2 : tensor<?x16xf32> -> tensor<?x32xf32>
// CHECK: %[[HQ:.*]] = llm.static_quant fp8_e4m3 %[[H]], %{{.*}} : tensor<?x32xf32>, tensor<1xf32>
// CHECK: llm.linear %[[HQ]], %{{.*}} -> tensor<?x16xf32>
// CHECK: %[[G:.*]] = llm.glu silu {{.*}} : tensor<?x48xf32>
// CHECK: %[[GA:.*]] = llm.all_gather %[[G]] unit = 8 rank = 1 ranks = 2 : tensor<?x48xf32> -> tensor<?x96xf32>
// CHECK: %[[GQ:.*]] = llm.dynamic_quant int8 %[[GA]] : tensor<?x96xf32>
// CHECK: %[[DW:.*]] = llm.weight "down[rows=16:32]" : tensor<16x96xf32>
// CHECK: llm.linear %[[GQ]], %[[DW]]
func.func @w8a8(%x: tensor<?x32xf32>, %pos: tensor<?xi64>, %off: index, %kc: tensor<64x2x8xf32>, %vc: tensor<64x2x8xf32>) -> (tensor<?x32xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>) {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x32xf32>
  %wq = llm.weight "q" : tensor<32x32xf32>
  %wk = llm.weight "k" : tensor<16x32xf32>
  %wv = llm.weight "v" : tensor<16x32xf32>
  %xq = llm.dynamic_quant int8 %x : tensor<?x32xf32>
  %q = llm.linear %xq, %wq : (tensor<?x32xf32>, tensor<32x32xf32>) -> tensor<?x32xf32>
  %k = llm.linear %xq, %wk : (tensor<?x32xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  %v = llm.linear %xq, %wv : (tensor<?x32xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  %q3 = tensor.expand_shape %q [[0], [1, 2]] output_shape [%t, 4, 8] : tensor<?x32xf32> into tensor<?x4x8xf32>
  %k3 = tensor.expand_shape %k [[0], [1, 2]] output_shape [%t, 2, 8] : tensor<?x16xf32> into tensor<?x2x8xf32>
  %v3 = tensor.expand_shape %v [[0], [1, 2]] output_shape [%t, 2, 8] : tensor<?x16xf32> into tensor<?x2x8xf32>
  %kc2 = llm.kv_cache_update %k3 into %kc[%off] : tensor<?x2x8xf32> into tensor<64x2x8xf32>
  %vc2 = llm.kv_cache_update %v3 into %vc[%off] : tensor<?x2x8xf32> into tensor<64x2x8xf32>
  %a = llm.attention %q3, %kc2, %vc2, %pos scale = 0.35 : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
  %flat = tensor.collapse_shape %a [[0], [1, 2]] : tensor<?x4x8xf32> into tensor<?x32xf32>
  %so = llm.weight "o.input_scale" : tensor<1xf32>
  %flatq = llm.static_quant fp8_e4m3 %flat, %so : tensor<?x32xf32>, tensor<1xf32>
  %wo = llm.weight "o" : tensor<32x32xf32>
  %o = llm.linear %flatq, %wo : (tensor<?x32xf32>, tensor<32x32xf32>) -> tensor<?x32xf32>
  %h = arith.addf %x, %o : tensor<?x32xf32>
  %hq = llm.dynamic_quant int8 %h : tensor<?x32xf32>
  %wg = llm.weight "gate" : tensor<96x32xf32>
  %wu = llm.weight "up" : tensor<96x32xf32>
  %wd = llm.weight "down" : tensor<32x96xf32>
  %g = llm.linear %hq, %wg : (tensor<?x32xf32>, tensor<96x32xf32>) -> tensor<?x96xf32>
  %u = llm.linear %hq, %wu : (tensor<?x32xf32>, tensor<96x32xf32>) -> tensor<?x96xf32>
  %gu = llm.glu silu %g, %u : tensor<?x96xf32>
  %guq = llm.dynamic_quant int8 %gu : tensor<?x96xf32>
  %d = llm.linear %guq, %wd : (tensor<?x96xf32>, tensor<32x96xf32>) -> tensor<?x32xf32>
  %y = arith.addf %h, %d : tensor<?x32xf32>
  return %y, %kc2, %vc2 : tensor<?x32xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>
}

// -----

// A weight with a separate scale tensor cannot be cut into row views yet.
func.func @scaled(%x: tensor<?x32xf32>) -> tensor<?x32xf32> {
  %w = llm.weight "w" scales "w_scale" : !llm.qtensor<64x32xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  %wd = llm.weight "down" : tensor<32x64xf32>
  // expected-error @+1 {{'w' is quantized with a separate scale tensor ('w_scale'}}
  %g = llm.linear %x, %w : (tensor<?x32xf32>, !llm.qtensor<64x32xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>) -> tensor<?x64xf32>
  %a = llm.activation gelu %g : tensor<?x64xf32>
  %d = llm.linear %a, %wd : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
  return %d : tensor<?x32xf32>
}

// -----

// One KV head cannot be split over two ranks: its two query heads on
// different ranks would change the attention's blocks.
func.func @few_heads(%x: tensor<?x32xf32>, %pos: tensor<?xi64>, %off: index, %kc: tensor<64x1x4xf32>, %vc: tensor<64x1x4xf32>) -> (tensor<?x2x4xf32>, tensor<64x1x4xf32>, tensor<64x1x4xf32>) {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x32xf32>
  %wq = llm.weight "q" : tensor<8x32xf32>
  %wk = llm.weight "k" : tensor<4x32xf32>
  %q = llm.linear %x, %wq : (tensor<?x32xf32>, tensor<8x32xf32>) -> tensor<?x8xf32>
  %k = llm.linear %x, %wk : (tensor<?x32xf32>, tensor<4x32xf32>) -> tensor<?x4xf32>
  %q3 = tensor.expand_shape %q [[0], [1, 2]] output_shape [%t, 2, 4] : tensor<?x8xf32> into tensor<?x2x4xf32>
  %k3 = tensor.expand_shape %k [[0], [1, 2]] output_shape [%t, 1, 4] : tensor<?x4xf32> into tensor<?x1x4xf32>
  %kc2 = llm.kv_cache_update %k3 into %kc[%off] : tensor<?x1x4xf32> into tensor<64x1x4xf32>
  %vc2 = llm.kv_cache_update %k3 into %vc[%off] : tensor<?x1x4xf32> into tensor<64x1x4xf32>
  // expected-error @+1 {{has 1 KV heads, fewer than the 2 ranks: every rank needs whole query groups (a KV head and its 2 query heads) for the 1-rank numbers; use at most 1 ranks}}
  %a = llm.attention %q3, %kc2, %vc2, %pos scale = 0.5 : (tensor<?x2x4xf32>, tensor<64x1x4xf32>, tensor<64x1x4xf32>, tensor<?xi64>) -> tensor<?x2x4xf32>
  return %a, %kc2, %vc2 : tensor<?x2x4xf32>, tensor<64x1x4xf32>, tensor<64x1x4xf32>
}
