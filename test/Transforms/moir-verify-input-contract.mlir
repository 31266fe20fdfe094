// RUN: moir-opt %s -moir-verify-input-contract -split-input-file -verify-diagnostics -allow-unregistered-dialect
// RUN: not moir-opt %s -moir-verify-input-contract="max-constant-elements=16" -split-input-file -allow-unregistered-dialect 2>&1 | FileCheck %s --check-prefix=SMALL

// A well-formed imported function passes: named weights, a quantized weight
// flowing into an operand that reads it, small index constants.
func.func @ok(%ids: tensor<?xi32>) -> tensor<?x32xf32> {
  %t = llm.weight "embed" : !llm.qtensor<100x32xi8, #llm.quant<kind = gguf, format = q8_0>>
  %e = llm.embedding %ids, %t : (tensor<?xi32>, !llm.qtensor<100x32xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x32xf32>
  %eps = arith.constant dense<1.0> : tensor<32xf32>
  %n = llm.rms_norm %e, %eps epsilon = 1.0e-5 : tensor<?x32xf32>, tensor<32xf32>
  return %n : tensor<?x32xf32>
}
// With a 16-element limit, the 32-element constant is refused.
// SMALL: error: embeds a 32-element constant in 'value'; weights must be referenced by name with llm.weight (limit 16 elements)

// -----

// Weights embedded as constants are refused.
func.func @embedded_weight(%x: tensor<?x64xf32>) -> tensor<?x128xf32> {
  // expected-error @+1 {{embeds a 8192-element constant in 'value'; weights must be referenced by name with llm.weight (limit 4096 elements)}}
  %w = arith.constant dense<0.5> : tensor<128x64xf32>
  %y = llm.linear %x, %w : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// Ops outside the contract's dialects are refused.
func.func @foreign_op(%a: index, %b: index) -> index {
  // expected-error @+1 {{'foreign.add' is outside the input contract (allowed dialects: builtin, func, arith, tensor, linalg, llm, moe, mla)}}
  %c = "foreign.add"(%a, %b) : (index, index) -> index
  return %c : index
}

// -----

// A quantized weight must not reach an operand without a kernel for it,
// e.g. leave a function.
func.func @quantized_escapes() -> !llm.qtensor<4x8xi8, #llm.quant<kind = per_tensor>> {
  %q = llm.weight "a" scales "a_s" : !llm.qtensor<4x8xi8, #llm.quant<kind = per_tensor>>
  // expected-error @+1 {{operand #0 is a quantized weight, which 'func.return' cannot read; insert llm.dequantize}}
  return %q : !llm.qtensor<4x8xi8, #llm.quant<kind = per_tensor>>
}

// -----

// Only the weight ops may produce quantized values.
func.func private @make() -> !llm.qtensor<4x8xi8, #llm.quant<kind = per_tensor>>
func.func @quantized_from_elsewhere() -> tensor<4x8xf32> {
  // expected-error @+1 {{only llm.weight and llm.stacked_weight may produce quantized weights}}
  %q = func.call @make() : () -> !llm.qtensor<4x8xi8, #llm.quant<kind = per_tensor>>
  %f = llm.dequantize %q : !llm.qtensor<4x8xi8, #llm.quant<kind = per_tensor>> -> tensor<4x8xf32>
  return %f : tensor<4x8xf32>
}
