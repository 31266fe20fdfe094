// RUN: moir-opt %s -canonicalize -split-input-file | FileCheck %s

// A linear reading a dequantized weight reads the quantized weight itself.
// CHECK-LABEL: func.func @linear_reads_quantized
// CHECK-SAME: (%[[X:.*]]: tensor<?x512xf32>)
// CHECK: %[[W:.*]] = llm.weight "w" scales "w_scale"
// CHECK-NOT: llm.dequantize
// CHECK: llm.linear %[[X]], %[[W]] : (tensor<?x512xf32>, !llm.qtensor<256x512xi8
func.func @linear_reads_quantized(%x: tensor<?x512xf32>) -> tensor<?x256xf32> {
  %q = llm.weight "w" scales "w_scale" : !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>>
  %w = llm.dequantize %q : !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>> -> tensor<256x512xf32>
  %y = llm.linear %x, %w : (tensor<?x512xf32>, tensor<256x512xf32>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}

// -----

// Same for the embedding table (a GGUF Q8_0 table).
// CHECK-LABEL: func.func @embedding_reads_quantized
// CHECK-NOT: llm.dequantize
// CHECK: llm.embedding %{{.*}}, %{{.*}} : (tensor<?xi32>, !llm.qtensor<1000x64xi8, #llm.quant<kind = gguf, format = q8_0>>)
func.func @embedding_reads_quantized(%ids: tensor<?xi32>) -> tensor<?x64xf32> {
  %q = llm.weight "token_embd.weight" : !llm.qtensor<1000x64xi8, #llm.quant<kind = gguf, format = q8_0>>
  %t = llm.dequantize %q : !llm.qtensor<1000x64xi8, #llm.quant<kind = gguf, format = q8_0>> -> tensor<1000x64xf32>
  %e = llm.embedding %ids, %t : (tensor<?xi32>, tensor<1000x64xf32>) -> tensor<?x64xf32>
  return %e : tensor<?x64xf32>
}

// -----

// A dequantize to bf16 rounds, which reading the quantized weight directly
// would not: it stays.
// CHECK-LABEL: func.func @bf16_dequantize_stays
// CHECK: %[[W:.*]] = llm.dequantize
// CHECK: llm.linear %{{.*}}, %[[W]] : (tensor<?x512xbf16>, tensor<256x512xbf16>)
func.func @bf16_dequantize_stays(%x: tensor<?x512xbf16>) -> tensor<?x256xbf16> {
  %q = llm.weight "w" scales "w_scale" : !llm.qtensor<256x512xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
  %w = llm.dequantize %q : !llm.qtensor<256x512xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>> -> tensor<256x512xbf16>
  %y = llm.linear %x, %w : (tensor<?x512xbf16>, tensor<256x512xbf16>) -> tensor<?x256xbf16>
  return %y : tensor<?x256xbf16>
}

// -----

// The activations operand of a linear never takes a quantized value, so a
// dequantized tensor used as activations stays dequantized.
// CHECK-LABEL: func.func @activation_operand_stays
// CHECK: %[[A:.*]] = llm.dequantize
// CHECK: llm.linear %[[A]], %{{.*}} : (tensor<4x512xf32>
func.func @activation_operand_stays(%w: tensor<256x512xf32>) -> tensor<4x256xf32> {
  %q = llm.weight "a" scales "a_scale" : !llm.qtensor<4x512xi8, #llm.quant<kind = per_tensor>>
  %a = llm.dequantize %q : !llm.qtensor<4x512xi8, #llm.quant<kind = per_tensor>> -> tensor<4x512xf32>
  %y = llm.linear %a, %w : (tensor<4x512xf32>, tensor<256x512xf32>) -> tensor<4x256xf32>
  return %y : tensor<4x256xf32>
}

// -----

// Writing zero rows leaves the cache unchanged.
// CHECK-LABEL: func.func @empty_cache_update
// CHECK-SAME: (%{{.*}}: tensor<0x4x8xf32>, %[[C:.*]]: tensor<16x4x8xf32>,
// CHECK-NOT: llm.kv_cache_update
// CHECK: return %[[C]]
func.func @empty_cache_update(%u: tensor<0x4x8xf32>, %c: tensor<16x4x8xf32>, %o: index) -> tensor<16x4x8xf32> {
  %0 = llm.kv_cache_update %u into %c[%o] : tensor<0x4x8xf32> into tensor<16x4x8xf32>
  return %0 : tensor<16x4x8xf32>
}
