// RUN: moir-opt %s -split-input-file -moir-outline-layers | FileCheck %s

// Ops marked moir.layer = N (by the importer) move into @layer_N, without the mark; the call passes what
// they use (constants are cloned) and returns what is used after them.
// CHECK: func.func private @layer_0(%[[X:.*]]: tensor<4xf32>, %[[W:.*]]: tensor<4xf32>) -> tensor<4xf32> attributes {moir.layer = 0 : i64}
// CHECK-NEXT: %[[A:.*]] = arith.addf %[[X]], %[[W]] : tensor<4xf32>
// CHECK-NEXT: %[[M:.*]] = arith.mulf %[[A]], %[[A]] : tensor<4xf32>
// CHECK-NEXT: return %[[M]]
// CHECK: func.func private @layer_1(%{{.*}}: tensor<4xf32>, %{{.*}}: tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT: arith.constant dense<2.000000e+00>
// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%[[IN:.*]]: tensor<4xf32>, %[[W0:.*]]: tensor<4xf32>, %[[W1:.*]]: tensor<4xf32>)
// CHECK: %[[H0:.*]] = call @layer_0(%[[IN]], %[[W0]])
// CHECK: %[[H1:.*]] = call @layer_1(%[[H0]], %[[W1]])
// CHECK: %[[OUT:.*]] = arith.negf %[[H1]]
// CHECK: return %[[OUT]]
func.func @forward(%x: tensor<4xf32>, %w0: tensor<4xf32>, %w1: tensor<4xf32>) -> tensor<4xf32> {
  %two = arith.constant dense<2.0> : tensor<4xf32>
  %a = arith.addf %x, %w0 {moir.layer = 0 : i64} : tensor<4xf32>
  %b = arith.mulf %a, %a {moir.layer = 0 : i64} : tensor<4xf32>
  %c = arith.addf %b, %w1 {moir.layer = 1 : i64} : tensor<4xf32>
  %d = arith.mulf %c, %two {moir.layer = 1 : i64} : tensor<4xf32>
  %e = arith.negf %d : tensor<4xf32>
  return %e : tensor<4xf32>
}

// -----

// A packed quantized weight (llm.packed_weight, by moir-bind-weights) enters
// the layer as its data and scales and is rebuilt there, so the layer's
// lowering sees the packed form.
// CHECK-LABEL: func.func private @layer_0
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[D:.*]]: tensor<8x32xi8>, %[[S:.*]]: tensor<8x2x2xf32>)
// CHECK: %[[W:.*]] = llm.packed_weight %[[D]], %[[S]] group 32
// CHECK: llm.linear %[[X]], %[[W]]
// CHECK-LABEL: func.func @forward
// CHECK: call @layer_0(%{{.*}}, %{{.*}}, %{{.*}}) : (tensor<?x64xf32>, tensor<8x32xi8>, tensor<8x2x2xf32>)
func.func @forward(%x: tensor<?x64xf32>, %d: tensor<8x32xi8>, %s: tensor<8x2x2xf32>) -> tensor<?x8xf32> {
  %w = llm.packed_weight %d, %s group 32 : tensor<8x32xi8>, tensor<8x2x2xf32> -> !llm.qtensor<8x64xi4, #llm.quant<kind = gguf, format = q4_0>>
  %y = llm.linear %x, %w {moir.layer = 0 : i64} : (tensor<?x64xf32>, !llm.qtensor<8x64xi4, #llm.quant<kind = gguf, format = q4_0>>) -> tensor<?x8xf32>
  %z = arith.negf %y : tensor<?x8xf32>
  return %z : tensor<?x8xf32>
}

// -----

// Layers whose outlined functions differ only in name (weights and caches are
// arguments) share the first one: layers 0 and 2 call @layer_0, layer 1 (one
// op more) keeps its own. Marks on nested ops (a linalg.generic's body) go
// too, so they do not keep equal layers apart.
// CHECK-LABEL: func.func private @layer_0
// CHECK: linalg.generic
// CHECK-NOT: moir.layer
// CHECK: linalg.yield %{{[^ ]*}} : f32
// CHECK-LABEL: func.func private @layer_1
// CHECK-NOT: func.func private @layer_2
// CHECK-LABEL: func.func @forward
// CHECK: %[[H0:.*]] = call @layer_0(%{{.*}}, %{{.*}})
// CHECK: %[[H1:.*]] = call @layer_1(%[[H0]], %{{.*}})
// CHECK: %[[H2:.*]] = call @layer_0(%[[H1]], %{{.*}})
// CHECK: return %[[H2]]
#id = affine_map<(d0) -> (d0)>
func.func @forward(%x: tensor<4xf32>, %w0: tensor<4xf32>, %w1: tensor<4xf32>, %w2: tensor<4xf32>) -> tensor<4xf32> {
  %a0 = arith.addf %x, %w0 {moir.layer = 0 : i64} : tensor<4xf32>
  %b0 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a0 : tensor<4xf32>) outs(%a0 : tensor<4xf32>) attrs = {moir.layer = 0 : i64} {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in {moir.layer = 0 : i64} : f32
    linalg.yield %n {moir.layer = 0 : i64} : f32
  } -> tensor<4xf32>
  %a1 = arith.addf %b0, %w1 {moir.layer = 1 : i64} : tensor<4xf32>
  %b1 = arith.mulf %a1, %a1 {moir.layer = 1 : i64} : tensor<4xf32>
  %a2 = arith.addf %b1, %w2 {moir.layer = 2 : i64} : tensor<4xf32>
  %b2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]} ins(%a2 : tensor<4xf32>) outs(%a2 : tensor<4xf32>) attrs = {moir.layer = 2 : i64} {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in {moir.layer = 2 : i64} : f32
    linalg.yield %n {moir.layer = 2 : i64} : f32
  } -> tensor<4xf32>
  return %b2 : tensor<4xf32>
}
