// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="whole-layers=true device=opencl" --verify-diagnostics | FileCheck %s
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="device=opencl" | FileCheck %s --check-prefix=PARTS

// moirc --target=halide: the embedding of a float table and the residual
// additions become Halide kernels too (`embed`, `add`), whatever `ops`
// lists; the table is resident. Without whole-layers they stay on MLIR.
// CHECK-LABEL: func.func @layer
// CHECK: %[[H:.*]] = moir.halide_call "moir_hl_embed_{{[0-9a-f]+}}" "embed"(%arg0, %[[T:.*]]) {device = "opencl", scale = 2.000000e+00 : f64} {resident = array<i64: 1>}
// CHECK: %[[N:.*]] = moir.halide_call "moir_hl_rms_norm_{{[0-9a-f]+}}" "rms_norm"(%[[H]],
// CHECK: moir.halide_call "moir_hl_add_{{[0-9a-f]+}}" "add"(%[[H]], %[[N]]) {device = "opencl"} {moir.layer = 0 : i64}
// CHECK-NOT: arith.addf
// CHECK-NOT: llm.embedding
// PARTS-LABEL: func.func @layer
// PARTS: llm.embedding
// PARTS: arith.addf
func.func @layer(%ids: tensor<?xi32>) -> tensor<?x64xf32> {
  %t = llm.weight "embed" : tensor<100x64xf32>
  %w = llm.weight "norm" {moir.layer = 0 : i64} : tensor<64xf32>
  %h = llm.embedding %ids, %t scale = 2.0 : (tensor<?xi32>, tensor<100x64xf32>) -> tensor<?x64xf32>
  %n = llm.rms_norm %h, %w epsilon = 1.0e-05 {moir.layer = 0 : i64} : tensor<?x64xf32>, tensor<64xf32>
  %s = arith.addf %h, %n {moir.layer = 0 : i64} : tensor<?x64xf32>
  return %s : tensor<?x64xf32>
}

// -----

// MLA's materialized prefill form gives way to the absorbed kernel for
// every token count: no scf.if keeps a prefill on MLIR.
// CHECK-LABEL: func.func @mla
// CHECK-NOT: scf.if
// CHECK: moir.halide_call "moir_hl_mla_{{[0-9a-f]+}}" "mla"
// CHECK-NOT: mla.attend
// PARTS-LABEL: func.func @mla
// PARTS: mla.attend
func.func @mla(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>,
               %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> tensor<?x4x16xf32> {
  %b = mla.attend %qn, %qp, %c, %r, %pos, %w
      config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      scale = 0.2 form = absorbed prefill = materialized {moir.layer = 0 : i64}
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %b : tensor<?x4x16xf32>
}

// -----

// Apertus's xIELU becomes a kernel with its beta and eps; its one-element
// weights are resident.
// CHECK-LABEL: func.func @xielu
// CHECK: moir.halide_call "moir_hl_xielu_{{[0-9a-f]+}}" "xielu"(%arg0, %{{.*}}, %{{.*}}) {beta = 5.000000e-01 : f64, device = "opencl", eps = -9.9999999999999995E-7 : f64} {moir.layer = 1 : i64, resident = array<i64: 1, 2>}
// PARTS-LABEL: func.func @xielu
// PARTS: llm.xielu
func.func @xielu(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %p = llm.weight "ap" {moir.layer = 1 : i64} : tensor<1xf32>
  %n = llm.weight "an" {moir.layer = 1 : i64} : tensor<1xf32>
  %y = llm.xielu %x, %p, %n beta = 5.0e-01 eps = -1.0e-06 {moir.layer = 1 : i64} : tensor<?x64xf32>, tensor<1xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A layer op Halide has no kernel for (erf's GELU) is refused, named.
func.func @erf(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{--target=halide runs every op of a layer on the Halide target, and this op of layer 2 has no Halide kernel}}
  %y = llm.activation gelu %x {moir.layer = 2 : i64} : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
