// RUN: moir-opt %s -allow-unregistered-dialect -moir-quantize-kv-cache -split-input-file | FileCheck %s --check-prefix=INT8
// RUN: moir-opt %s -allow-unregistered-dialect -moir-quantize-kv-cache=format=fp8 -split-input-file | FileCheck %s --check-prefix=FP8
// RUN: not moir-opt %s -allow-unregistered-dialect -moir-quantize-kv-cache=format=int4 -split-input-file 2>&1 | FileCheck %s --check-prefix=BAD

// MLA's two caches (latent, RoPE key): each becomes i8 storage with a
// per-token f32 scales argument right after it; the update quantizes, the
// attention reads the dequantized cache; @forward returns storage and scales,
// and each scales argument says what it holds (#moir.arg<cache_scales>).
// INT8-LABEL: func.func @forward
// INT8-SAME: (%[[OFF:.*]]: index, %[[C:.*]]: tensor<64x16xi8>, %[[CS:.*]]: tensor<64xf32> {moir.arg = #moir.arg<cache_scales>}, %[[R:.*]]: tensor<64x4xi8>, %[[RS:.*]]: tensor<64xf32> {moir.arg = #moir.arg<cache_scales>}, %{{.*}}: tensor<?x16xf32>, %{{.*}}: tensor<?x4xf32>)
// INT8-SAME: -> (tensor<?x4xf32>, tensor<64x16xi8>, tensor<64xf32>, tensor<64x4xi8>, tensor<64xf32>)
// INT8: %[[C1:[^,]*]], %[[C1S:.*]] = llm.quantized_cache_update int8 %{{.*}} into %[[C]], %[[CS]][%[[OFF]]] : tensor<?x16xf32> into tensor<64x16xi8>, tensor<64xf32>
// INT8: %[[D:.*]] = llm.dequantize_cache int8 %[[C1]], %[[C1S]] : tensor<64x16xi8>, tensor<64xf32> -> tensor<64x16xf32>
// INT8: %[[R1:[^,]*]], %[[R1S:.*]] = llm.quantized_cache_update int8 %{{.*}} into %[[R]], %[[RS]][%[[OFF]]]
// INT8: %[[DR:.*]] = llm.dequantize_cache int8 %[[R1]], %[[R1S]] : tensor<64x4xi8>, tensor<64xf32> -> tensor<64x4xf32>
// INT8: "test.attend"(%[[D]], %[[DR]])
// INT8: return %{{.*}}, %[[C1]], %[[C1S]], %[[R1]], %[[R1S]]
// FP8-LABEL: func.func @forward
// FP8-SAME: tensor<64x16xf8E4M3FN>, %{{.*}}: tensor<64xf32> {moir.arg = #moir.arg<cache_scales>}, %{{.*}}: tensor<64x4xf8E4M3FN>, %{{.*}}: tensor<64xf32> {moir.arg = #moir.arg<cache_scales>}
// FP8: llm.quantized_cache_update fp8_e4m3
// FP8: llm.dequantize_cache fp8_e4m3
// BAD: moir-quantize-kv-cache: unknown format 'int4' (known: int8, fp8)
func.func @forward(%off: index, %c: tensor<64x16xf32>, %r: tensor<64x4xf32>, %x: tensor<?x16xf32>, %k: tensor<?x4xf32>)
    -> (tensor<?x4xf32>, tensor<64x16xf32>, tensor<64x4xf32>) {
  %c1 = llm.kv_cache_update %x into %c[%off] : tensor<?x16xf32> into tensor<64x16xf32>
  %r1 = llm.kv_cache_update %k into %r[%off] : tensor<?x4xf32> into tensor<64x4xf32>
  %a = "test.attend"(%c1, %r1) : (tensor<64x16xf32>, tensor<64x4xf32>) -> tensor<?x4xf32>
  return %a, %c1, %r1 : tensor<?x4xf32>, tensor<64x16xf32>, tensor<64x4xf32>
}

// -----

// A [capacity, kv_heads, head_dim] cache gets one scale per token and head.
// INT8-LABEL: func.func @forward
// INT8-SAME: tensor<32x2x8xi8>, %{{.*}}: tensor<32x2xf32>
// INT8: llm.quantized_cache_update int8 %{{.*}} : tensor<?x2x8xf32> into tensor<32x2x8xi8>, tensor<32x2xf32>
// INT8: llm.dequantize_cache int8 {{.*}} -> tensor<32x2x8xf32>
func.func @forward(%off: index, %k: tensor<32x2x8xf32>, %x: tensor<?x2x8xf32>) -> (tensor<32x2x8xf32>, tensor<32x2x8xf32>) {
  %k1 = llm.kv_cache_update %x into %k[%off] : tensor<?x2x8xf32> into tensor<32x2x8xf32>
  %a = "test.read"(%k1) : (tensor<32x2x8xf32>) -> tensor<32x2x8xf32>
  return %a, %k1 : tensor<32x2x8xf32>, tensor<32x2x8xf32>
}
