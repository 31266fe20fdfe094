// RUN: moir-opt %s -moe-record-routing | FileCheck %s

// Each MoE layer's routing ids go to the runtime's recorder with the expert
// count, before the experts run; no layer number (the recorder counts the
// calls), so identical layers stay identical.
// CHECK-LABEL: func.func @fused
// CHECK: moe.record_routing %[[IDS:.*]] experts = 8 {moir.layer = 3 : i64} : tensor<?x2xi32>
// CHECK-NEXT: moe.fused_experts silu %{{.*}}, %[[IDS]]
func.func @fused(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %ids: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %wg = llm.weight "gate" : tensor<8x32x64xf32>
  %wu = llm.weight "up" : tensor<8x32x64xf32>
  %wd = llm.weight "down" : tensor<8x64x32xf32>
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) {moir.layer = 3 : i64} : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// The unfused steps: recorded at the dispatch.
// CHECK-LABEL: func.func @unfused
// CHECK: moe.record_routing %{{.*}} experts = 8 {moir.layer = 0 : i64}
// CHECK-NEXT: moe.dispatch
func.func @unfused(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) -> tensor<9xi32> {
  %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 {moir.layer = 0 : i64} : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32>
  return %offsets : tensor<9xi32>
}
