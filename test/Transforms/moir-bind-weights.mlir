// RUN: moir-opt %s -moir-bind-weights | FileCheck %s

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
