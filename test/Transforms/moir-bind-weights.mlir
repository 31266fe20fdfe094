// RUN: moir-opt %s -split-input-file -moir-bind-weights -verify-diagnostics | FileCheck %s

// Each distinct weight (or stack) becomes one read-only trailing argument of
// @forward, in order of first use; repeated references share it; the names
// are recorded in each argument's #moir.arg; @forward turns private.
// CHECK-LABEL: func.func private @forward
// CHECK-SAME: (%[[IDS:.*]]: tensor<?xi32>, %[[E:.*]]: tensor<16x8xf32> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["embed"]>}, %[[S:.*]]: tensor<2x4x8xf32> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["e0", "e1"]>})
// CHECK-NOT: llm.weight
// CHECK-NOT: llm.stacked_weight
// CHECK: llm.embedding %[[IDS]], %[[E]]
// CHECK: llm.linear %{{.*}}, %[[E]]
// CHECK: return %{{.*}}, %[[S]]
func.func @forward(%ids: tensor<?xi32>) -> (tensor<?x16xf32>, tensor<2x4x8xf32>) {
  %t = llm.weight "embed" : tensor<16x8xf32>
  %h = llm.embedding %ids, %t : (tensor<?xi32>, tensor<16x8xf32>) -> tensor<?x8xf32>
  %t2 = llm.weight "embed" : tensor<16x8xf32>
  %l = llm.linear %h, %t2 : (tensor<?x8xf32>, tensor<16x8xf32>) -> tensor<?x16xf32>
  %s = llm.stacked_weight ["e0", "e1"] : tensor<2x4x8xf32>
  return %l, %s : tensor<?x16xf32>, tensor<2x4x8xf32>
}

// -----

// A quantized weight is bound as its packed data and (scale, offset) groups
// (include/moir/Frontend/Quantization.h), each argument's #moir.arg naming the
// form and the part; llm.packed_weight, at the top of @forward, stands for
// the weight. Q4_K: 4-bit codes two per byte, groups of 32, quantized as
// Q4_K first when the stored tensor is float, its scales the K-quant
// superblocks' bytes (":k": per 256 columns d and -dmin as f16 bytes, then 8
// scale and 8 min bytes: [.., 20] i8); Q6_K: int8 codes, groups of 16,
// symmetric, per 256 columns d and 16 scale bytes ([.., 18] i8); a stack of FP8
// experts with 128x128 blocks: groups of gcd(128, 96) = 32, symmetric.
// GGUF's legacy blocks keep their f16 numbers: Q8_0 one f16 scale per 32
// (as many bytes as the file's blocks), Q4_0 an f16 (scale, offset) pair.
// RUN: moir-opt %s -split-input-file -moir-bind-weights -verify-diagnostics | FileCheck %s --check-prefix=PACKED
// PACKED-LABEL: func.func private @forward({{.*}}: tensor<?x256xf32>
// PACKED-SAME: %[[D:[a-z0-9]+]]: tensor<64x128xi8> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["w4"], packing = "u4:32:q4_k:k/data">}
// PACKED-SAME: %[[S:[a-z0-9]+]]: tensor<64x1x20xi8> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["w4"], packing = "u4:32:q4_k:k/scales">}
// PACKED-SAME: tensor<64x256xi8> {bufferization.writable = false, moir.arg = #moir.arg<weight, {{.*}}, packing = "i8:16:q6_k:sym:k/data">}
// PACKED-SAME: tensor<64x1x18xi8> {bufferization.writable = false, moir.arg = #moir.arg<weight, {{.*}}, packing = "i8:16:q6_k:sym:k/scales">}
// PACKED-SAME: tensor<2x64x96xf8E4M3FN> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["e0", "e1"], packing = "f8e4m3:32:sym/data">}
// PACKED-SAME: tensor<2x64x3x1xf32> {bufferization.writable = false, moir.arg = #moir.arg<weight, {{.*}}, packing = "f8e4m3:32:sym/scales">}
// PACKED-SAME: tensor<64x256xi8> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["w8"], packing = "i8:32:q8_0:f16:sym/data">}
// PACKED-SAME: tensor<64x8x1xf16> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["w8"], packing = "i8:32:q8_0:f16:sym/scales">}
// PACKED-SAME: tensor<64x128xi8> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["w40"], packing = "u4:32:f16/data">}
// PACKED-SAME: tensor<64x8x2xf16> {bufferization.writable = false, moir.arg = #moir.arg<weight, ["w40"], packing = "u4:32:f16/scales">}
// PACKED: llm.packed_weight %[[D]], %[[S]] group 32
// PACKED-NOT: llm.weight
func.func @forward(%x: tensor<?x256xf32>, %y: tensor<?x96xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>, !llm.qtensor<2x64x96xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>, tensor<?x64xf32>, tensor<?x64xf32>) {
  %w4 = llm.weight "w4" : !llm.qtensor<64x256xi4, #llm.quant<kind = gguf, format = q4_k>>
  %a = llm.linear %x, %w4 : (tensor<?x256xf32>, !llm.qtensor<64x256xi4, #llm.quant<kind = gguf, format = q4_k>>) -> tensor<?x64xf32>
  %w6 = llm.weight "w6" : !llm.qtensor<64x256xi6, #llm.quant<kind = gguf, format = q6_k>>
  %b = llm.linear %x, %w6 : (tensor<?x256xf32>, !llm.qtensor<64x256xi6, #llm.quant<kind = gguf, format = q6_k>>) -> tensor<?x64xf32>
  %e = llm.stacked_weight ["e0", "e1"] scales ["e0_scale_inv", "e1_scale_inv"] : !llm.qtensor<2x64x96xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>
  %w8 = llm.weight "w8" : !llm.qtensor<64x256xi8, #llm.quant<kind = gguf, format = q8_0>>
  %c = llm.linear %x, %w8 : (tensor<?x256xf32>, !llm.qtensor<64x256xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x64xf32>
  %w40 = llm.weight "w40" : !llm.qtensor<64x256xi4, #llm.quant<kind = gguf, format = q4_0>>
  %d = llm.linear %x, %w40 : (tensor<?x256xf32>, !llm.qtensor<64x256xi4, #llm.quant<kind = gguf, format = q4_0>>) -> tensor<?x64xf32>
  return %a, %b, %e, %c, %d : tensor<?x64xf32>, tensor<?x64xf32>, !llm.qtensor<2x64x96xf8E4M3FN, #llm.quant<kind = block, block = [1, 128, 128]>>, tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// The fused experts read a shared expert's down projection in blocks of the
// routed experts' FFN columns. Blocks of 128 are not whole superblocks of
// 256, so that Q4_K weight gets the per-group form (f32 scale and offset per
// 32); with routed FFN blocks of 256 (second function) it keeps its
// superblocks.
// RUN: moir-opt %s -split-input-file -moir-bind-weights -verify-diagnostics | FileCheck %s --check-prefix=SLICED
// SLICED: tensor<256x8x2xf32> {{{[^}]*}}packing = "u4:32:q4_k/scales">}
// SLICED: tensor<256x2x20xi8> {{{[^}]*}}packing = "u4:32:q4_k:k/scales">}
func.func @forward(%x: tensor<?x256xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> tensor<?x256xf32> {
  %g = llm.stacked_weight ["g0", "g1"] : tensor<2x128x256xf32>
  %u = llm.stacked_weight ["u0", "u1"] : tensor<2x128x256xf32>
  %d = llm.stacked_weight ["d0", "d1"] : tensor<2x256x128xf32>
  %sg = llm.weight "sg" : tensor<256x256xf32>
  %su = llm.weight "su" : tensor<256x256xf32>
  %sd = llm.weight "sd" : !llm.qtensor<256x256xi4, #llm.quant<kind = gguf, format = q4_k>>
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %u, %d) shared(%sg, %su, %sd)
      : (tensor<?x256xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<2x128x256xf32>,
         tensor<2x128x256xf32>, tensor<2x256x128xf32>, tensor<256x256xf32>, tensor<256x256xf32>,
         !llm.qtensor<256x256xi4, #llm.quant<kind = gguf, format = q4_k>>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

func.func @forward(%x: tensor<?x256xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> tensor<?x256xf32> {
  %g = llm.stacked_weight ["g0", "g1"] : tensor<2x256x256xf32>
  %u = llm.stacked_weight ["u0", "u1"] : tensor<2x256x256xf32>
  %d = llm.stacked_weight ["d0", "d1"] : tensor<2x256x256xf32>
  %sg = llm.weight "sg" : tensor<512x256xf32>
  %su = llm.weight "su" : tensor<512x256xf32>
  %sd = llm.weight "sd" : !llm.qtensor<256x512xi4, #llm.quant<kind = gguf, format = q4_k>>
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %u, %d) shared(%sg, %su, %sd)
      : (tensor<?x256xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<2x256x256xf32>,
         tensor<2x256x256xf32>, tensor<2x256x256xf32>, tensor<512x256xf32>, tensor<512x256xf32>,
         !llm.qtensor<256x512xi4, #llm.quant<kind = gguf, format = q4_k>>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// One scale per row (per-channel FP8) of two shared experts' down
// projection: the row's scale is repeated over each expert's 256 columns,
// so the fused experts' column blocks hold whole groups.
// RUN: moir-opt %s -split-input-file -moir-bind-weights -verify-diagnostics | FileCheck %s --check-prefix=ROWS
// ROWS: tensor<256x512xf8E4M3FN> {{{[^}]*}}packing = "f8e4m3:256:fp8:sym/data">}
// ROWS: tensor<256x2x1xf32> {{{[^}]*}}packing = "f8e4m3:256:fp8:sym/scales">}
func.func @forward(%x: tensor<?x256xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> tensor<?x256xf32> {
  %g = llm.stacked_weight ["g0", "g1"] : tensor<2x256x256xf32>
  %u = llm.stacked_weight ["u0", "u1"] : tensor<2x256x256xf32>
  %d = llm.stacked_weight ["d0", "d1"] : tensor<2x256x256xf32>
  %sg = llm.weight "sg" : tensor<512x256xf32>
  %su = llm.weight "su" : tensor<512x256xf32>
  %sd = llm.weight "sd" : !llm.qtensor<256x512xf8E4M3FN, #llm.quant<kind = per_channel, axis = 0>>
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %u, %d) shared(%sg, %su, %sd)
      : (tensor<?x256xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<2x256x256xf32>,
         tensor<2x256x256xf32>, tensor<2x256x256xf32>, tensor<512x256xf32>, tensor<512x256xf32>,
         !llm.qtensor<256x512xf8E4M3FN, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// A scheme no packed form holds (per-tensor int8) is refused naming the
// weight.
func.func @forward(%x: tensor<?x32xf32>) -> tensor<?x8xf32> {
  // expected-error @below {{weight 'pt' is quantized as '!llm.qtensor<8x32xi8, #llm.quant<kind = per_tensor>>', which no packed form of the kernels holds}}
  %w = llm.weight "pt" scales "pt_scale" : !llm.qtensor<8x32xi8, #llm.quant<kind = per_tensor>>
  %a = llm.linear %x, %w : (tensor<?x32xf32>, !llm.qtensor<8x32xi8, #llm.quant<kind = per_tensor>>) -> tensor<?x8xf32>
  return %a : tensor<?x8xf32>
}
