// RUN: moir-opt %s -moir-cpu-configure-lowering -moir-lower-to-linalg -split-input-file -verify-diagnostics | FileCheck %s --implicit-check-not=llm.linear --implicit-check-not=llm.rope --implicit-check-not=moe. --implicit-check-not=mla.attend

// llm.linear: a contraction over the [out, in] weight, bf16 extended in the
// body, marked for the thread pool, FMAs reassociable; the bias seeds the
// accumulator.
// CHECK-LABEL: func.func @linear
// CHECK: %[[INIT:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<32xf32>)
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}, #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<32x64xbf16>) outs(%[[INIT]] : tensor<?x32xf32>) attrs = {moir.parallel}
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.mulf {{.*}} fastmath<reassoc,contract>
// CHECK: arith.addf {{.*}} fastmath<reassoc,contract>
func.func @linear(%x: tensor<?x64xf32>, %w: tensor<32x64xbf16>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  %y = llm.linear %x, %w, %b : (tensor<?x64xf32>, tensor<32x64xbf16>, tensor<32xf32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// llm.rms_norm over [tokens, hidden]: the sum of squares and the scaling,
// both marked for the thread pool (parallel over tokens); over [tokens,
// heads, dim] (per-head norms) neither is.
// CHECK-LABEL: func.func @rms_norm
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]} ins(%arg0 : tensor<?x64xf32>) {{.*}} attrs = {moir.parallel}
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]} {{.*}} attrs = {moir.parallel}
// CHECK: math.rsqrt
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]} ins(%arg2 : tensor<?x4x16xf32>)
// CHECK-NOT: moir.parallel
// CHECK: return
func.func @rms_norm(%x: tensor<?x64xf32>, %w: tensor<64xf32>, %h: tensor<?x4x16xf32>, %hw: tensor<16xf32>) -> (tensor<?x64xf32>, tensor<?x4x16xf32>) {
  %y = llm.rms_norm %x, %w epsilon = 1.0e-6 : tensor<?x64xf32>, tensor<64xf32>
  %z = llm.rms_norm %h, %hw epsilon = 1.0e-6 : tensor<?x4x16xf32>, tensor<16xf32>
  return %y, %z : tensor<?x64xf32>, tensor<?x4x16xf32>
}

// -----

// llm.rope: inverse frequencies computed at compile time (theta 10000, dim
// 4: 1 and 0.01); cos and sin of position * frequency once per token and
// frequency ([tokens, 2] tables, parallel over tokens); then the rotation
// (rotate_half pairing) over each token's heads' elements as one dimension,
// parallel over tokens, reading the tables.
// CHECK-LABEL: func.func @rope
// CHECK: arith.constant dense<[1.000000e+00, 0.00999999977]> : tensor<2xf32>
// CHECK: %[[COS:.*]] = linalg.generic {{.*}} ins(%arg1 : tensor<?xi64>) outs({{.*}} : tensor<?x2xf32>) attrs = {moir.parallel}
// CHECK: math.cos
// CHECK: %[[SIN:.*]] = linalg.generic {{.*}} ins(%arg1 : tensor<?xi64>) outs({{.*}} : tensor<?x2xf32>) attrs = {moir.parallel}
// CHECK: math.sin
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %arg0 {{\[}}[0], [1, 2]] : tensor<?x2x4xf32> into tensor<?x8xf32>
// CHECK: linalg.generic {{.*}} ins(%[[ROWS]] : tensor<?x8xf32>) {{.*}} attrs = {moir.parallel}
// CHECK-NOT: math.cos
// CHECK: tensor.extract %[[COS]]
// CHECK: tensor.extract %[[SIN]]
// CHECK: tensor.expand_shape {{.*}} : tensor<?x8xf32> into tensor<?x2x4xf32>
func.func @rope(%x: tensor<?x2x4xf32>, %p: tensor<?xi64>) -> tensor<?x2x4xf32> {
  %r = llm.rope %x, %p with <theta = 1.0e4, dim = 4> : tensor<?x2x4xf32>, tensor<?xi64>
  return %r : tensor<?x2x4xf32>
}

// -----

// llm.kv_cache_update: an insert at the offset.
// CHECK-LABEL: func.func @cache
// CHECK: tensor.insert_slice %{{.*}} into %{{.*}}[%{{.*}}, 0, 0] [%{{.*}}, 2, 8] [1, 1, 1] : tensor<?x2x8xf32> into tensor<64x2x8xf32>
func.func @cache(%u: tensor<?x2x8xf32>, %c: tensor<64x2x8xf32>, %o: index) -> tensor<64x2x8xf32> {
  %r = llm.kv_cache_update %u into %c[%o] : tensor<?x2x8xf32> into tensor<64x2x8xf32>
  return %r : tensor<64x2x8xf32>
}

// -----

// llm.attention: the valid prefix (max position + 1) of the cache, GQA by
// floordiv, masked softmax, then the weighted sum of values with the value
// row innermost (t, h, s, dv).
// CHECK-LABEL: func.func @attention
// CHECK: arith.maxsi
// CHECK: tensor.extract_slice %{{.*}}[0, 0, 0] [%[[LEN:.*]], 2, 8] [1, 1, 1] : tensor<64x2x8xf32> to tensor<?x2x8xf32>
// CHECK: linalg.generic {{.*}} attrs = {moir.parallel}
// CHECK: arith.cmpi sgt
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction", "parallel"]
func.func @attention(%q: tensor<?x4x8xf32>, %k: tensor<64x2x8xf32>, %v: tensor<64x2x8xf32>, %p: tensor<?xi64>) -> tensor<?x4x8xf32> {
  %o = llm.attention %q, %k, %v, %p scale = 0.35 : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
  return %o : tensor<?x4x8xf32>
}

// -----

// The MoE steps: the routing, one work item per token (each writes its row of
// the results); loops over tokens (counting, placing), a loop over experts of
// dense matmuls, a gather-sum for the combine.
// CHECK-LABEL: func.func @moe
// CHECK: scf.forall (%[[T:.*]]) in (%{{.*}}) shared_outs({{.*}}) -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK: scf.forall.in_parallel
// CHECK-NEXT: tensor.parallel_insert_slice %{{.*}} into %{{.*}}[%[[T]], 0] [1, 2] [1, 1] : tensor<2xf32> into tensor<?x2xf32>
// CHECK-NEXT: tensor.parallel_insert_slice %{{.*}} into %{{.*}}[%[[T]], 0] [1, 2] [1, 1] : tensor<2xi32> into tensor<?x2xi32>
// CHECK: scf.for {{.*}} -> (tensor<4xi32>)
// CHECK: scf.for {{.*}} -> (tensor<5xi32>)
// CHECK: scf.for {{.*}} -> (tensor<4xi32>, tensor<?xi32>)
// CHECK: scf.for {{.*}} -> (tensor<?x16xf32>)
// CHECK: tensor.extract_slice %{{.*}}[%{{.*}}, 0, 0] [1, 32, 16] [1, 1, 1] : tensor<4x32x16xf32> to tensor<32x16xf32>
// CHECK: tensor.insert_slice
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
func.func @moe(%x: tensor<?x16xf32>, %l: tensor<?x4xf32>, %g: tensor<4x32x16xf32>, %d: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %w, %ids = moe.route %l routing <top_k = 2, scoring = softmax, norm_topk_prob = true> : tensor<?x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 4 : tensor<?x16xf32>, tensor<?x2xi32> -> tensor<?x16xf32>, tensor<5xi32>, tensor<?xi32>
  %y = moe.expert_ffn silu %rows, %offsets, %g, %g, %d : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  %out = moe.combine %y, %src, %w : tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// moe.fused_experts with two shared experts (FFN 64 = 2 x 32): ids and
// weights widened by the shared slots; only the routed copies gathered; the
// selected experts compacted; phase 1 one forall item per (expert, FFN block)
// with each branch's own gate/up kernels (routed from the gathered rows,
// shared from x), SiLU-and-multiply times the routing weight; phase 2 one
// item per hidden block: the down kernel, then rows added into their tokens.
// CHECK-LABEL: func.func @fused_experts
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x16xf32>
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x4xi32>)
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x4xf32>)
// CHECK: scf.for {{.*}} -> (tensor<6xi32>)
// CHECK: scf.for {{.*}} -> (tensor<7xi32>)
// CHECK: %[[ROUTED:.*]] = tensor.extract_slice %{{.*}}[0] [%{{.*}}] [1] : tensor<?xi32> to tensor<?xi32>
// CHECK: linalg.generic {{.*}} ins(%[[ROUTED]] : tensor<?xi32>) {{.*}} attrs = {moir.parallel}
// CHECK: scf.for {{.*}} -> (tensor<6xi32>, index)
// CHECK: scf.forall (%{{.*}}) in (%{{.*}}) shared_outs(%{{.*}}) -> (tensor<?x32xf32>)
// CHECK: scf.if %{{.*}} -> (tensor<?x?xf32>, tensor<?x?xf32>)
// CHECK: linalg.generic {{.*}} attrs = {moir.kernel}
// CHECK: linalg.generic {{.*}} attrs = {moir.kernel}
// CHECK: } else {
// CHECK: %[[XS:.*]] = tensor.cast %[[X]]
// CHECK: linalg.generic {{.*}} ins(%[[XS]], %{{.*}}) {{.*}} attrs = {moir.kernel}
// CHECK: linalg.generic {{.*}} ins(%[[XS]], %{{.*}}) {{.*}} attrs = {moir.kernel}
// CHECK: math.exp
// CHECK: tensor.parallel_insert_slice
// CHECK: scf.forall (%{{.*}}) in (1) shared_outs(%{{.*}}) -> (tensor<?x16xf32>)
// CHECK: scf.for
// CHECK: scf.if %{{.*}} -> (tensor<?x?xf32>)
// CHECK: linalg.generic {{.*}} attrs = {moir.kernel}
// CHECK: linalg.generic {{.*}} attrs = {moir.kernel}
// CHECK: scf.for
// CHECK: tensor.insert_slice
// CHECK: tensor.parallel_insert_slice
func.func @fused_experts(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %g: tensor<4x32x16xf32>, %d: tensor<4x16x32xf32>, %sg: tensor<64x16xf32>, %sd: tensor<16x64xf32>) -> tensor<?x16xf32> {
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %g, %d) shared(%sg, %sg, %sd) : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<16x64xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A static token count, bf16 routing weights and f32 shared experts beside
// bf16 routed ones: the shared branch's rows and each weight slice keep their
// own types (the scf.if branches agree), the routing weight is widened.
// CHECK-LABEL: func.func @fused_experts_static
// CHECK: scf.forall
// CHECK: scf.if %{{.*}} -> (tensor<?x?xf32>, tensor<?x?xf32>)
// CHECK: tensor<?x16xbf16>
// CHECK: } else {
// CHECK: tensor.cast %{{.*}} : tensor<5x16xf32> to tensor<?x16xf32>
// CHECK: tensor<?x16xf32>
// CHECK: arith.extf %{{.*}} : bf16 to f32
func.func @fused_experts_static(%x: tensor<5x16xf32>, %ids: tensor<5x2xi32>, %w: tensor<5x2xbf16>, %g: tensor<4x32x16xbf16>, %d: tensor<4x16x32xbf16>, %sg: tensor<64x16xf32>, %sd: tensor<16x64xf32>) -> tensor<5x16xf32> {
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %g, %d) shared(%sg, %sg, %sd) : (tensor<5x16xf32>, tensor<5x2xi32>, tensor<5x2xbf16>, tensor<4x32x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>, tensor<64x16xf32>, tensor<64x16xf32>, tensor<16x64xf32>) -> tensor<5x16xf32>
  return %y : tensor<5x16xf32>
}

// -----

// Phase 2's items cover at least 32K weights of each expert's down projection:
// an FFN of 256 takes blocks of 128 hidden columns (2 items for 256), an FFN
// of 512 the configured 64 (4 items). In decode (fewer than 8 copies per
// expert: tokens x 2 < 32) both phases take the CPU's decode_ffn_block, 256.
// CHECK-LABEL: func.func @fused_experts_narrow
// CHECK: %[[DECODE:.*]] = arith.cmpi ult, %{{.*}}, %c32{{[_0-9]*}} : index
// CHECK: %[[BLOCK:.*]] = arith.select %[[DECODE]], %c256{{[_0-9]*}}, %c64{{[_0-9]*}} : index
// CHECK: %[[BLOCKS:.*]] = arith.ceildivui %c256{{[_0-9]*}}, %[[BLOCK]] : index
// CHECK: %[[ITEMS:.*]] = arith.muli %{{.*}}, %[[BLOCKS]] : index
// CHECK: scf.forall (%{{.*}}) in (%[[ITEMS]]) shared_outs(%{{.*}}) -> (tensor<?x256xf32>)
// CHECK: %[[DOWN:.*]] = arith.select %[[DECODE]], %c256{{[_0-9]*}}, %c128{{[_0-9]*}} : index
// CHECK: %[[DOWNITEMS:.*]] = arith.ceildivui %c256{{[_0-9]*}}, %[[DOWN]] : index
// CHECK: scf.forall (%{{.*}}) in (%[[DOWNITEMS]]) shared_outs(%{{.*}}) -> (tensor<?x256xf32>)
// CHECK-LABEL: func.func @fused_experts_wider
// CHECK: scf.forall (%{{.*}}) in (%{{.*}}) shared_outs(%{{.*}}) -> (tensor<?x512xf32>)
// CHECK: %[[DOWN:.*]] = arith.select %{{.*}}, %c256{{[_0-9]*}}, %c64{{[_0-9]*}} : index
// CHECK: %[[DOWNITEMS:.*]] = arith.ceildivui %c256{{[_0-9]*}}, %[[DOWN]] : index
// CHECK: scf.forall (%{{.*}}) in (%[[DOWNITEMS]]) shared_outs(%{{.*}}) -> (tensor<?x256xf32>)
func.func @fused_experts_narrow(%x: tensor<?x256xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %g: tensor<4x256x256xf32>, %d: tensor<4x256x256xf32>) -> tensor<?x256xf32> {
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %g, %d) : (tensor<?x256xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x256x256xf32>, tensor<4x256x256xf32>, tensor<4x256x256xf32>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}
func.func @fused_experts_wider(%x: tensor<?x256xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %g: tensor<4x512x256xf32>, %d: tensor<4x256x512xf32>) -> tensor<?x256xf32> {
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %g, %d) : (tensor<?x256xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x512x256xf32>, tensor<4x512x256xf32>, tensor<4x256x512xf32>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// moe.fused_route: the logits of all tokens are one f32 product
// (moir.precise) against the router weight, parallel over its experts (a
// decode step's product is then not one work item); then one forall over
// blocks of 16 tokens takes its block's logits and per token the routing
// (here DeepSeek-V3's: sigmoid, bias, group scores from the two best
// experts, top groups, top-k) written into the block's rows.
// CHECK-LABEL: func.func @fused_route
// CHECK: %[[LOGITS:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<8x16xbf16>) {{.*}} attrs = {moir.parallel, moir.precise}
// CHECK: %[[BLOCKS:.*]] = arith.ceildivui %{{.*}}, %c16
// CHECK: scf.forall (%{{.*}}) in (%[[BLOCKS]]) shared_outs(%{{.*}}, %{{.*}}) -> (tensor<?x3xf32>, tensor<?x3xi32>)
// CHECK: tensor.extract_slice %[[LOGITS]]
// CHECK: scf.for {{.*}} -> (tensor<?x3xf32>, tensor<?x3xi32>)
// CHECK: scf.for {{.*}} -> (tensor<4xf32>)
// CHECK: scf.for {{.*}} -> (tensor<8xf32>, tensor<3xf32>, tensor<3xi32>, f32)
// CHECK: scf.forall.in_parallel
// CHECK-NEXT: tensor.parallel_insert_slice %{{.*}} into %{{.*}} : tensor<?x3xf32> into tensor<?x3xf32>
// CHECK-NEXT: tensor.parallel_insert_slice %{{.*}} into %{{.*}} : tensor<?x3xi32> into tensor<?x3xi32>
func.func @fused_route(%x: tensor<?x16xf32>, %wr: tensor<8x16xbf16>, %b: tensor<8xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>) {
  %w, %ids = moe.fused_route %x, %wr bias %b routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5> : tensor<?x16xf32>, tensor<8x16xbf16>, tensor<8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return %w, %ids : tensor<?x3xf32>, tensor<?x3xi32>
}

// -----

// Quantized caches read through llm.dequantize_cache: the products read the
// stored int8 / FP8 values (converted in the body); the row scales multiply
// the scores after them and the probabilities before the weighted sum. No
// dequantized copy of the cache is made.
// CHECK-LABEL: func.func @attend_int8
// CHECK-NOT: llm.dequantize_cache
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[LAT:.*]] : tensor<?x32xf32>, tensor<?x32xi8>)
// CHECK: arith.sitofp %{{.*}} : i8 to f32
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[LS:.*]] : tensor<?x?xf32>, tensor<?xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x8xi8>)
// CHECK: math.exp
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[LS]] : tensor<?x?xf32>, tensor<?xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[LAT]] : tensor<?x?xf32>, tensor<?x32xi8>)
func.func @attend_int8(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xi8>, %cs: tensor<128xf32>, %r: tensor<128x8xi8>, %rs: tensor<128xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %dc = llm.dequantize_cache int8 %c, %cs : tensor<128x32xi8>, tensor<128xf32> -> tensor<128x32xf32>
  %dr = llm.dequantize_cache int8 %r, %rs : tensor<128x8xi8>, tensor<128xf32> -> tensor<128x8xf32>
  %a = mla.attend %qn, %qp, %dc, %dr, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}

// -----

// llm.attention flash: work items (block of 32 queries, KV head, split of
// the keys), splits = max(1, min(ceil(len / 128), ceil(32 / max(pairs,
// 1)))) (256 keys a head, the 2 heads of a group sharing them); the
// block's queries of the 2 heads sharing the KV head scaled into the rows of
// one product; the split's key blocks of 64 from the window's first block to
// the block's last position; per block the scores (kernel, int8 keys as
// stored), masked and times the key scales, the running maximum updated in
// place with alpha = exp(m_old - m_new), probabilities, the running sum
// rescaled then summed, probabilities times the value scales, the output
// rescaled then the weighted sum of value rows (kernel); each item's output,
// maximum and sum stored at its index. Then per (block, KV head) the splits
// combined by exp(m_split - m), divided by the weighted sums and inserted at
// (block, head group).
// CHECK-LABEL: func.func @flash_int8
// CHECK-SAME: %[[Q:[a-z0-9]+]]: tensor<?x4x8xf32>, %[[K:[a-z0-9]+]]: tensor<64x2x8xi8>, %[[KS:[a-z0-9]+]]: tensor<64x2xf32>, %[[V:[a-z0-9]+]]: tensor<64x2x8xi8>, %[[VS:[a-z0-9]+]]: tensor<64x2xf32>
// CHECK-NOT: llm.dequantize_cache
// CHECK: %[[KEYS:.*]] = tensor.extract_slice %[[K]][0, 0, 0] [%[[LEN:.*]], 2, 8]
// CHECK: %[[QB:.*]] = arith.ceildivui %{{.*}}, %c32
// CHECK: %[[PAIRS:.*]] = arith.muli %[[QB]], %c2
// CHECK: arith.ceildivui %[[LEN]], %c128
// CHECK: %[[SOME:.*]] = arith.maxui %[[PAIRS]], %c1
// CHECK: arith.ceildivui %c32{{.*}}, %[[SOME]]
// CHECK: %[[SPLITS:.*]] = arith.maxui
// CHECK: %[[ITEMS:.*]] = arith.muli %[[PAIRS]], %[[SPLITS]]
// CHECK: scf.forall (%[[ITEM:.*]]) in (%[[ITEMS]]) shared_outs(%[[PACC:.*]] = %{{.*}}, %[[PMAX:.*]] = %{{.*}}, %[[PSUM:.*]] = %{{.*}}) -> (tensor<?x64x8xf32>, tensor<?x64xf32>, tensor<?x64xf32>)
// CHECK: tensor.extract_slice %[[Q]][%{{.*}}, %{{.*}}, 0] [%{{.*}}, 2, 8] [1, 1, 1] : tensor<?x4x8xf32> to tensor<?x2x8xf32>
// CHECK: arith.mulf %{{.*}}, %cst
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2]] : tensor<?x2x8xf32> into tensor<?x8xf32>
// CHECK: scf.for {{.*}} -> (i64, i64)
// CHECK: arith.constant -3.40282347E+38
// CHECK: %[[STATE:.*]]:3 = scf.for %[[S0:.*]] = %{{.*}} to %{{.*}} step %c64{{[_0-9]*}} iter_args(%[[ACC:.*]] = %{{.*}}, %[[M:.*]] = %{{.*}}, %[[L:.*]] = %{{.*}}) -> (tensor<?x8xf32>, tensor<?xf32>, tensor<?xf32>)
// CHECK: %[[KB:.*]] = tensor.extract_slice %[[KEYS]][%[[S0]], %{{.*}}, 0] [%{{.*}}, 1, 8] [1, 1, 1] : tensor<?x2x8xi8> to tensor<?x8xi8>
// CHECK: %[[S:.*]] = linalg.generic {{.*}} ins(%[[ROWS]], %[[KB]] : tensor<?x8xf32>, tensor<?x8xi8>) {{.*}} attrs = {moir.kernel}
// CHECK: %[[MASKED:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %[[S]], %{{.*}} : tensor<?xi64>, tensor<?x?xf32>, tensor<?xf32>)
// CHECK: arith.cmpi sgt
// CHECK: arith.cmpi sge
// CHECK: %[[UPD:.*]]:2 = linalg.generic {{.*}} outs(%[[M]], %{{.*}} : tensor<?xf32>, tensor<?xf32>)
// CHECK: math.exp
// CHECK: %[[P:.*]] = linalg.generic {{.*}} ins(%[[MASKED]], %[[UPD]]#0
// CHECK: math.exp
// CHECK: %[[LS:.*]] = linalg.generic {{.*}} ins(%[[UPD]]#1 : tensor<?xf32>) outs(%[[L]] : tensor<?xf32>)
// CHECK: %[[LN:.*]] = linalg.generic {{.*}} ins(%[[P]] : tensor<?x?xf32>) outs(%[[LS]] : tensor<?xf32>)
// CHECK: %[[PW:.*]] = linalg.generic {{.*}} ins(%[[P]], %{{.*}} : tensor<?x?xf32>, tensor<?xf32>)
// CHECK: %[[AS:.*]] = linalg.generic {{.*}} ins(%[[UPD]]#1 : tensor<?xf32>) outs(%[[ACC]] : tensor<?x8xf32>)
// CHECK: %[[AN:.*]] = linalg.generic {{.*}} ins(%[[PW]], %{{.*}} : tensor<?x?xf32>, tensor<?x8xi8>) outs(%[[AS]] : tensor<?x8xf32>) attrs = {moir.kernel}
// CHECK: scf.yield %[[AN]], %[[UPD]]#0, %[[LN]]
// CHECK: tensor.parallel_insert_slice %[[STATE]]#0 into %[[PACC]][%[[ITEM]], 0, 0] [1, %{{.*}}, 8]
// CHECK: tensor.parallel_insert_slice %[[STATE]]#1 into %[[PMAX]][%[[ITEM]], 0] [1, %{{.*}}]
// CHECK: tensor.parallel_insert_slice %[[STATE]]#2 into %[[PSUM]][%[[ITEM]], 0] [1, %{{.*}}]
// CHECK: scf.forall (%{{.*}}) in (%[[PAIRS]]) shared_outs(%[[OUT:.*]] = %{{.*}}) -> (tensor<?x4x8xf32>)
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: iterator_types = ["parallel", "reduction", "parallel"]
// CHECK: arith.divf
// CHECK: tensor.expand_shape
// CHECK: tensor.parallel_insert_slice %{{.*}} into %[[OUT]][%{{.*}}, %{{.*}}, 0] [%{{.*}}, 2, 8]
func.func @flash_int8(%q: tensor<?x4x8xf32>, %k: tensor<64x2x8xi8>, %ks: tensor<64x2xf32>, %v: tensor<64x2x8xi8>, %vs: tensor<64x2xf32>, %p: tensor<?xi64>) -> tensor<?x4x8xf32> {
  %dk = llm.dequantize_cache int8 %k, %ks : tensor<64x2x8xi8>, tensor<64x2xf32> -> tensor<64x2x8xf32>
  %dv = llm.dequantize_cache int8 %v, %vs : tensor<64x2x8xi8>, tensor<64x2xf32> -> tensor<64x2x8xf32>
  %o = llm.attention %q, %dk, %dv, %p scale = 0.35 window = 100 flash : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
  return %o : tensor<?x4x8xf32>
}

// -----

// Flash with FP8 caches: each block of keys and values is dequantized once
// (E4M3 -> f32 times the row scale), and the kernels read f32.
// CHECK-LABEL: func.func @flash_fp8
// CHECK: scf.for
// CHECK: %[[KB:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x8xf8E4M3FN>, tensor<?xf32>)
// CHECK: arith.extf %{{.*}} : f8E4M3FN to f32
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[KB]] : tensor<?x8xf32>, tensor<?x8xf32>) {{.*}} attrs = {moir.kernel}
// CHECK: %[[VB:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x8xf8E4M3FN>, tensor<?xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[VB]] : tensor<?x?xf32>, tensor<?x8xf32>) {{.*}} attrs = {moir.kernel}
func.func @flash_fp8(%q: tensor<?x4x8xf32>, %k: tensor<64x2x8xf8E4M3FN>, %ks: tensor<64x2xf32>, %v: tensor<64x2x8xf8E4M3FN>, %vs: tensor<64x2xf32>, %p: tensor<?xi64>) -> tensor<?x4x8xf32> {
  %dk = llm.dequantize_cache fp8_e4m3 %k, %ks : tensor<64x2x8xf8E4M3FN>, tensor<64x2xf32> -> tensor<64x2x8xf32>
  %dv = llm.dequantize_cache fp8_e4m3 %v, %vs : tensor<64x2x8xf8E4M3FN>, tensor<64x2xf32> -> tensor<64x2x8xf32>
  %o = llm.attention %q, %dk, %dv, %p scale = 0.35 flash : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
  return %o : tensor<?x4x8xf32>
}

// -----

// CHECK-LABEL: func.func @attention_fp8
// CHECK-NOT: llm.dequantize_cache
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[K:.*]] : tensor<?x4x8xf32>, tensor<?x2x8xf8E4M3FN>)
// CHECK: arith.extf %{{.*}} : f8E4M3FN to f32
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x4x?xf32>, tensor<?x2xf32>)
// CHECK: math.exp
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x4x?xf32>, tensor<?x2xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x4x?xf32>, tensor<?x2x8xf8E4M3FN>)
func.func @attention_fp8(%q: tensor<?x4x8xf32>, %k: tensor<64x2x8xf8E4M3FN>, %ks: tensor<64x2xf32>, %v: tensor<64x2x8xf8E4M3FN>, %vs: tensor<64x2xf32>, %p: tensor<?xi64>) -> tensor<?x4x8xf32> {
  %dk = llm.dequantize_cache fp8_e4m3 %k, %ks : tensor<64x2x8xf8E4M3FN>, tensor<64x2xf32> -> tensor<64x2x8xf32>
  %dv = llm.dequantize_cache fp8_e4m3 %v, %vs : tensor<64x2x8xf8E4M3FN>, tensor<64x2xf32> -> tensor<64x2x8xf32>
  %o = llm.attention %q, %dk, %dv, %p scale = 0.35 : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
  return %o : tensor<?x4x8xf32>
}

// -----

// The update: per-row absolute maximum, scale = max / 127 (1 for a zero
// row), values divided, clamped, rounded to int8; storage and scales written
// at the offset.
// CHECK-LABEL: func.func @quantized_update
// CHECK: arith.maximumf
// CHECK: arith.divf %{{.*}}, %cst
// CHECK: arith.select
// CHECK: math.round
// CHECK: arith.fptosi %{{.*}} : f32 to i8
// CHECK: tensor.insert_slice %{{.*}} into %{{.*}}[%{{.*}}, 0] [%{{.*}}, 16] [1, 1] : tensor<?x16xi8> into tensor<64x16xi8>
// CHECK: tensor.insert_slice %{{.*}} into %{{.*}}[%{{.*}}] [%{{.*}}] [1] : tensor<?xf32> into tensor<64xf32>
func.func @quantized_update(%x: tensor<?x16xf32>, %c: tensor<64x16xi8>, %s: tensor<64xf32>, %off: index) -> (tensor<64x16xi8>, tensor<64xf32>) {
  %c1, %s1 = llm.quantized_cache_update int8 %x into %c, %s[%off] : tensor<?x16xf32> into tensor<64x16xi8>, tensor<64xf32>
  return %c1, %s1 : tensor<64x16xi8>, tensor<64xf32>
}

// -----

// The materialized form with flash: per-head keys k_nope [len, 4, 16] and
// the RoPE key rows [len, 8] every head shares, one KV head per query head
// (work items of 64 queries per head): two score kernels accumulate into one
// product, the weighted sum reads the per-head values.
// CHECK-LABEL: func.func @attend_flash
// CHECK: arith.ceildivui %{{.*}}, %c64
// CHECK: scf.forall
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2]] : tensor<?x1x16xf32> into tensor<?x16xf32>
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2]] : tensor<?x1x8xf32> into tensor<?x8xf32>
// CHECK: scf.for {{.*}} step %c64
// CHECK: tensor.extract_slice %{{.*}}[%{{.*}}, %{{.*}}, 0] [%{{.*}}, 1, 16] [1, 1, 1] : tensor<?x4x16xf32> to tensor<?x16xf32>
// CHECK: %[[NOPE:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<?x16xf32>) {{.*}} attrs = {moir.kernel}
// CHECK: tensor.extract_slice %{{.*}}[%{{.*}}, 0] [%{{.*}}, 8] [1, 1] : tensor<?x8xf32> to tensor<?x8xf32>
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x8xf32>) outs(%[[NOPE]] : tensor<?x?xf32>) attrs = {moir.kernel}
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x?xf32>, tensor<?x16xf32>) {{.*}} attrs = {moir.kernel}
// CHECK: scf.forall
// CHECK: tensor.parallel_insert_slice %{{.*}} into %{{.*}}[%{{.*}}, %{{.*}}, 0] [%{{.*}}, 1, 16] [1, 1, 1] : tensor<?x1x16xf32> into tensor<?x4x16xf32>
func.func @attend_flash(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = materialized flash
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}

// -----

// The absorbed form with flash and int8 caches: q_lat = q_nope W_UK, then
// flash attention with the latent cache [len, 32] as both keys (with the
// RoPE cache [len, 8]) and values, all 4 heads sharing it (rows: 16 queries
// x 4 heads); each part's scores on its own kernel (int8 as stored), then
// scaled by its rows' scales in the masking; W_UV applied after.
// CHECK-LABEL: func.func @attend_flash_int8
// CHECK-NOT: llm.dequantize_cache
// CHECK: %[[LAT:.*]] = tensor.extract_slice %{{.*}}[0, 0] [%{{.*}}, 32] [1, 1] : tensor<128x32xi8> to tensor<?x32xi8>
// CHECK: %[[LS:.*]] = tensor.extract_slice %{{.*}}[0] [%{{.*}}] [1] : tensor<128xf32> to tensor<?xf32>
// CHECK: %[[QLAT:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x4x32xf32>) attrs = {moir.parallel}
// CHECK: scf.forall
// CHECK: tensor.extract_slice %[[QLAT]][%{{.*}}, %{{.*}}, 0] [%{{.*}}, 4, 32]
// CHECK: tensor.collapse_shape %{{.*}} : tensor<?x4x32xf32> into tensor<?x32xf32>
// CHECK: scf.for
// CHECK: %[[LB:.*]] = tensor.extract_slice %[[LAT]][%{{.*}}, 0] [%{{.*}}, 32] [1, 1] : tensor<?x32xi8> to tensor<?x32xi8>
// CHECK: %[[S1:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %[[LB]] : tensor<?x32xf32>, tensor<?x32xi8>) {{.*}} attrs = {moir.kernel}
// CHECK: %[[S2:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x8xi8>) {{.*}} attrs = {moir.kernel}
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[S1]], %{{.*}}, %[[S2]], %{{.*}} : tensor<?xi64>, tensor<?x?xf32>, tensor<?xf32>, tensor<?x?xf32>, tensor<?xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x?xf32>, tensor<?x32xi8>) {{.*}} attrs = {moir.kernel}
// CHECK: scf.forall
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x4x16xf32>) attrs = {moir.parallel}
func.func @attend_flash_int8(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xi8>, %cs: tensor<128xf32>, %r: tensor<128x8xi8>, %rs: tensor<128xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %dc = llm.dequantize_cache int8 %c, %cs : tensor<128x32xi8>, tensor<128xf32> -> tensor<128x32xf32>
  %dr = llm.dequantize_cache int8 %r, %rs : tensor<128x8xi8>, tensor<128xf32> -> tensor<128x8xf32>
  %a = mla.attend %qn, %qp, %dc, %dr, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed flash
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}

// -----

// mla.attend in the latent space: W_UK and W_UV read from kv_b_proj rows
// h * (nope + v) + ...
// CHECK-LABEL: func.func @attend
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[UK:.*]], #{{.*}}]{{.*}}attrs = {moir.parallel}
// CHECK: math.exp
// CHECK: linalg.generic {{.*}} attrs = {moir.parallel}
func.func @attend(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}

// -----

// The materialized form expands keys (W_UK rows) and values (W_UV rows) of
// every cache row per head, then attends; with `prefill = materialized` (from
// mla-absorb-weights) the call's cost picks a form at run time: scf.if with
// the materialized form (expansion over the cache, scores, weighted sum of
// value rows) and the absorbed one.
// CHECK-LABEL: func.func @attend_materialized
// CHECK-NOT: scf.if
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x32xf32>, tensor<128x32xf32>) outs(%{{.*}} : tensor<?x4x16xf32>) attrs = {moir.parallel}
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x32xf32>, tensor<128x32xf32>) outs(%{{.*}} : tensor<?x4x16xf32>) attrs = {moir.parallel}
// CHECK: math.exp
// CHECK: iterator_types = ["parallel", "parallel", "reduction", "parallel"]
// CHECK-LABEL: func.func @attend_per_phase
// CHECK: %[[CHEAPER:.*]] = arith.cmpi ult
// CHECK: scf.if %[[CHEAPER]]
// CHECK: math.exp
// CHECK: } else {
// CHECK: math.exp
func.func @attend_materialized(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = materialized
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}
func.func @attend_per_phase(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed prefill = materialized
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}

// -----

// A packed kv_b_proj (Q8_0) is read as stored, never dequantized whole per
// call: the materialized form multiplies every cache row by all its rows at
// once (one packed contraction, [len, heads * (nope + v)], split per head);
// the absorbed form runs a work item per head (scf.forall), its query
// absorption summing the head's W_UK rows (codes indexed (k, n)) and its
// output projection dotting along the head's W_UV rows (codes (n, k)), each
// a moir.kernel the CPU kernels take.
// CHECK-DAG: #[[ROWS:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[ROWSCALE:.*]] = affine_map<(d0, d1, d2) -> (d1, d2 floordiv 32, 0)>
// CHECK-DAG: #[[COMBINE:.*]] = affine_map<(d0, d1, d2) -> (d2, d1)>
// CHECK-DAG: #[[COMBINESCALE:.*]] = affine_map<(d0, d1, d2) -> (d2, d1 floordiv 32, 0)>
// CHECK-LABEL: func.func @attend_packed
// CHECK-SAME: %[[D:[a-z0-9]*]]: tensor<128x32xi8>, %[[S:[a-z0-9]*]]: tensor<128x1x1xf16>
// CHECK-NOT: tensor<128x32xf32>)
// CHECK: scf.if
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[ROWS]], #[[ROWSCALE]], #{{.*}}]{{.*}} ins(%{{.*}}, %[[D]], %[[S]] : tensor<?x32xf32>, tensor<128x32xi8>, tensor<128x1x1xf16>) outs(%{{.*}} : tensor<?x128xf32>) attrs = {moir.packed = "i8:32", moir.parallel}
// CHECK: tensor.expand_shape {{.*}} : tensor<?x128xf32> into tensor<?x4x32xf32>
// CHECK: } else {
// CHECK: scf.forall (%{{.*}}) in (4)
// CHECK: tensor.extract_slice %[[D]][%{{.*}}, 0] [16, 32] [1, 1] : tensor<128x32xi8> to tensor<16x32xi8>
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[COMBINE]], #[[COMBINESCALE]], #{{.*}}]{{.*}} : tensor<?x16xf32>, tensor<16x32xi8>, tensor<16x1x1xf16>) outs(%{{.*}} : tensor<?x32xf32>) attrs = {moir.kernel, moir.packed = "i8:32"}
// CHECK: math.exp
// CHECK: scf.forall (%{{.*}}) in (4)
// CHECK: tensor.extract_slice %[[D]][%{{.*}}, 0] [16, 32] [1, 1] : tensor<128x32xi8> to tensor<16x32xi8>
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[ROWS]], #[[ROWSCALE]], #{{.*}}]{{.*}} : tensor<?x32xf32>, tensor<16x32xi8>, tensor<16x1x1xf16>) outs(%{{.*}} : tensor<?x16xf32>) attrs = {moir.kernel, moir.packed = "i8:32"}
func.func @attend_packed(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %pos: tensor<?xi64>, %d: tensor<128x32xi8>, %s: tensor<128x1x1xf16>) -> tensor<?x4x16xf32> {
  %w = llm.packed_weight %d, %s group 32 : tensor<128x32xi8>, tensor<128x1x1xf16> -> !llm.qtensor<128x32xi8, #llm.quant<kind = gguf, format = q8_0>>
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed prefill = materialized
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, !llm.qtensor<128x32xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x4x16xf32>
  return %a : tensor<?x4x16xf32>
}

// -----

// A quantized weight that reaches the lowering unbound (moir-bind-weights
// makes it an llm.packed_weight): a clear error, not a crash.
func.func @quantized(%x: tensor<?x64xf32>, %w: !llm.qtensor<32x64xi8, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<?x32xf32> {
  // expected-error @below {{reaches the lowering without its packed form (run moir-bind-weights)}}
  // expected-error @below {{'llm.linear' has no lowering for these operand types yet}}
  %y = "llm.linear"(%x, %w) : (tensor<?x64xf32>, !llm.qtensor<32x64xi8, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// A packed 4-bit weight: the contraction reads the codes (byte (k / 32) * 16 +
// k % 16, the high nibble for k % 32 >= 16) and its group's scale and offset
// (the scales tensor twice, maps (n, k / 32, 0) and (n, k / 32, 1)); w =
// scale * code + offset. moir.packed names the form for the kernels.
// CHECK-DAG: #[[CODE:.*]] = affine_map<(d0, d1, d2) -> (d1, (d2 floordiv 32) * 16 + d2 mod 16)>
// CHECK-DAG: #[[SCALE:.*]] = affine_map<(d0, d1, d2) -> (d1, d2 floordiv 32, 0)>
// CHECK-DAG: #[[OFFSET:.*]] = affine_map<(d0, d1, d2) -> (d1, d2 floordiv 32, 1)>
// CHECK-LABEL: func.func @packed
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[D:.*]]: tensor<32x32xi8>, %[[S:.*]]: tensor<32x2x2xf32>)
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[CODE]], #[[SCALE]], #[[OFFSET]], #{{.*}}]
// CHECK-SAME: ins(%[[X]], %[[D]], %[[S]], %[[S]] :
// CHECK-SAME: moir.packed = "u4:32"
// CHECK: arith.shrui
// CHECK: arith.andi
// CHECK: arith.uitofp
// CHECK: arith.mulf
// CHECK: arith.addf
func.func @packed(%x: tensor<?x64xf32>, %d: tensor<32x32xi8>, %s: tensor<32x2x2xf32>) -> tensor<?x32xf32> {
  %w = llm.packed_weight %d, %s group 32 : tensor<32x32xi8>, tensor<32x2x2xf32> -> !llm.qtensor<32x64xi4, #llm.quant<kind = gguf, format = q4_0>>
  %y = llm.linear %x, %w : (tensor<?x64xf32>, !llm.qtensor<32x64xi4, #llm.quant<kind = gguf, format = q4_0>>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// A symmetric packed int8 weight with f16 scales (Q8_0 as bound: scales
// [rows, groups, 1] x f16): the scales tensor once (no offset map), the
// scale extended to f32, w = scale * code.
// CHECK-DAG: #[[SCALE8:.*]] = affine_map<(d0, d1, d2) -> (d1, d2 floordiv 32, 0)>
// CHECK-LABEL: func.func @packed_sym_f16
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[D:.*]]: tensor<32x64xi8>, %[[S:.*]]: tensor<32x2x1xf16>)
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}, #[[SCALE8]], #{{.*}}]
// CHECK-SAME: ins(%[[X]], %[[D]], %[[S]] : tensor<?x64xf32>, tensor<32x64xi8>, tensor<32x2x1xf16>)
// CHECK-SAME: moir.packed = "i8:32"
// CHECK: arith.sitofp
// CHECK: arith.extf {{.*}} : f16 to f32
// CHECK: arith.mulf
// CHECK-NOT: arith.addf {{.*}}f16
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK-NEXT: linalg.yield
func.func @packed_sym_f16(%x: tensor<?x64xf32>, %d: tensor<32x64xi8>, %s: tensor<32x2x1xf16>) -> tensor<?x32xf32> {
  %w = llm.packed_weight %d, %s group 32 : tensor<32x64xi8>, tensor<32x2x1xf16> -> !llm.qtensor<32x64xi8, #llm.quant<kind = gguf, format = q8_0>>
  %y = llm.linear %x, %w : (tensor<?x64xf32>, !llm.qtensor<32x64xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// The lowering knows no target: without a #moir.lowering_config (written by a
// target's configuration pass) it refuses to guess one.
// RUN: not moir-opt %s -split-input-file -moir-lower-to-linalg 2>&1 | FileCheck %s --check-prefix=NOCONFIG
// NOCONFIG: moir-lower-to-linalg: no moir.lowering_config on the module (run a target's configuration pass first

// -----

// A Halide kernel's packed quantized weight becomes its codes, in its place,
// and its scales, after the other operands; `packed` names them (operand
// index = form). The packed weight is then left without users.
// CHECK-LABEL: func.func @halide_packed
// CHECK-NOT: llm.packed_weight
// CHECK: moir.halide_call "moir_hl_linear_0" "linear"(%arg0, %arg1, %arg3, %arg2) {packed = "1=u4:32", variant = "decode"} {moir.layer = 2 : i64} : (tensor<?x64xf32>, tensor<32x32xi8>, tensor<32xf32>, tensor<32x2x2xf32>) -> tensor<?x32xf32>
func.func @halide_packed(%x: tensor<?x64xf32>, %d: tensor<32x32xi8>, %s: tensor<32x2x2xf32>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  %w = llm.packed_weight %d, %s group 32 : tensor<32x32xi8>, tensor<32x2x2xf32> -> !llm.qtensor<32x64xi4, #llm.quant<kind = gguf, format = q4_0>>
  %y = moir.halide_call "moir_hl_linear_0" "linear"(%x, %w, %b) {variant = "decode"} {moir.layer = 2 : i64} : (tensor<?x64xf32>, !llm.qtensor<32x64xi4, #llm.quant<kind = gguf, format = q4_0>>, tensor<32xf32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// A packed form the Halide kernels have no decoder for is named: K-quant
// superblock scales (moir-bind-weights gives a weight a Halide kernel reads
// per-group scales).
func.func @halide_superblocks(%x: tensor<?x512xf32>, %d: tensor<8x256xi8>, %s: tensor<8x2x20xi8>) -> tensor<?x8xf32> {
  %w = llm.packed_weight %d, %s group 32 : tensor<8x256xi8>, tensor<8x2x20xi8> -> !llm.qtensor<8x512xi4, #llm.quant<kind = gguf, format = q4_k>>
  // expected-error @below {{Halide kernel 'linear': no decoder for the packed form u4:32}}
  %y = moir.halide_call "moir_hl_linear_1" "linear"(%x, %w) {} : (tensor<?x512xf32>, !llm.qtensor<8x512xi4, #llm.quant<kind = gguf, format = q4_k>>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Act-order inputs: llm.permute is a gather of the innermost dimension; the
// unfused experts gather each expert's rows by its order before gate/up.
// CHECK-LABEL: func.func @permute
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]} outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: %[[K:.*]] = linalg.index 1 : index
// CHECK: %[[FROM:.*]] = tensor.extract %{{.*}}[%[[K]]] : tensor<16xi32>
// CHECK: %[[COL:.*]] = arith.index_cast %[[FROM]] : i32 to index
// CHECK: tensor.extract %{{.*}}[%{{.*}}, %[[COL]]] : tensor<?x16xf32>
func.func @permute(%x: tensor<?x16xf32>, %order: tensor<16xi32>) -> tensor<?x16xf32> {
  %y = llm.permute %x, %order : (tensor<?x16xf32>, tensor<16xi32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// CHECK-LABEL: func.func @expert_ffn_input_order
// CHECK: scf.for %[[E:[^ ]+]] = {{.*}} -> (tensor<?x16xf32>)
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: tensor.extract %{{.*}}[%[[E]], %{{.*}}] : tensor<4x16xi32>
func.func @expert_ffn_input_order(%rows: tensor<?x16xf32>, %offsets: tensor<5xi32>, %g: tensor<4x32x16xf32>, %d: tensor<4x16x32xf32>, %order: tensor<4x16xi32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn silu %rows, %offsets, %g, %g, %d input_order %order : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x16xi32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// W8A8 activations: each row's largest magnitude (a reduction), then the
// division by its scale (max / 127.5, f32 epsilon for a row of zeros),
// clamped to [-128, 127], rounded to nearest even and scaled back; FP8
// rounds through an E4M3 truncation instead. Both run on the thread pool.
// CHECK-LABEL: func.func @dynamic_quant
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]} ins(%{{.*}} : tensor<?x16xf32>) outs(%{{.*}} : tensor<?xf32>) attrs = {moir.parallel}
// CHECK: math.absf
// CHECK: arith.maximumf
// CHECK: linalg.generic {{.*}} attrs = {moir.parallel}
// CHECK: arith.divf %{{.*}}, %cst{{.*}} : f32
// CHECK: arith.select
// CHECK: %[[V:.*]] = arith.divf
// CHECK: math.roundeven
// CHECK: arith.mulf
// CHECK: linalg.generic
// CHECK: arith.truncf %{{.*}} : f32 to f8E4M3FN
// CHECK: arith.extf
func.func @dynamic_quant(%x: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %y = llm.dynamic_quant int8 %x : tensor<?x16xf32>
  %z = llm.dynamic_quant fp8_e4m3 %y : tensor<?x16xf32>
  return %z : tensor<?x16xf32>
}

// -----

// Static activations: the stored scale read once, every value divided by it,
// clamped to [-448, 448], rounded through E4M3 and scaled back; no row
// maximum. On the thread pool.
// CHECK-LABEL: func.func @static_quant
// CHECK-NOT: math.absf
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[ONE:.*]], #{{.*}}], iterator_types = ["parallel", "parallel"]} ins(%{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<1xbf16>) {{.*}} attrs = {moir.parallel}
// CHECK: ^bb0(%{{.*}}: f32, %[[S:.*]]: bf16
// CHECK: %[[SF:.*]] = arith.extf %[[S]] : bf16 to f32
// CHECK: arith.divf %{{.*}}, %[[SF]] : f32
// CHECK: arith.maximumf
// CHECK: arith.minimumf
// CHECK: arith.truncf %{{.*}} : f32 to f8E4M3FN
// CHECK: arith.extf
// CHECK: arith.mulf %{{.*}}, %[[SF]] : f32
func.func @static_quant(%x: tensor<?x16xf32>, %s: tensor<1xbf16>) -> tensor<?x16xf32> {
  %y = llm.static_quant fp8_e4m3 %x, %s : tensor<?x16xf32>, tensor<1xbf16>
  return %y : tensor<?x16xf32>
}

// -----

// W8A8 experts: the rows are quantized before the loop over the experts,
// each expert's activated FFN rows before its down product.
// CHECK-LABEL: func.func @expert_ffn_activation_quant
// CHECK: math.roundeven
// CHECK: scf.for
// CHECK: math.roundeven
func.func @expert_ffn_activation_quant(%rows: tensor<?x16xf32>, %offsets: tensor<5xi32>, %g: tensor<4x32x16xf32>, %d: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn silu %rows, %offsets, %g, %g, %d activation_quant int8 : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// W8A8 int8 rows into a linear on a packed integer weight, on a target whose
// kernels quantize such rows themselves (the CPU's lowering config says
// row_quant): the product reads the raw rows, marked moir.row_quant (not
// precise), and the rows are not rounded here.
// CHECK-LABEL: func.func @row_quant
// CHECK-NOT: math.roundeven
// CHECK: linalg.generic {{.*}} ins(%arg0, {{.*}} attrs = {{{.*}}moir.row_quant
// CHECK-NOT: moir.precise
func.func @row_quant(%x: tensor<?x32xf32>, %d: tensor<16x32xi8>, %s: tensor<16x1x1xf16>) -> tensor<?x16xf32> {
  %w = llm.packed_weight %d, %s group 32 : tensor<16x32xi8>, tensor<16x1x1xf16> -> !llm.qtensor<16x32xi8, #llm.quant<kind = gguf, format = q8_0>>
  %q = llm.dynamic_quant int8 %x : tensor<?x32xf32>
  %y = llm.linear %q, %w precise : (tensor<?x32xf32>, !llm.qtensor<16x32xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
