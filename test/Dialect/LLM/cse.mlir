// RUN: moir-opt %s -cse | FileCheck %s

// llm.weight is pure, so CSE merges references to the same tensor.
// Tied embeddings: two references to one tensor become one.
// CHECK-LABEL: func.func @tied_weights_merge
// CHECK-COUNT-1: llm.weight "embed"
// CHECK-NOT: llm.weight
func.func @tied_weights_merge(%ids: tensor<?xi32>) -> tensor<?x1000xf32> {
  %t = llm.weight "embed" : tensor<1000x64xf32>
  %e = llm.embedding %ids, %t : (tensor<?xi32>, tensor<1000x64xf32>) -> tensor<?x64xf32>
  %h = llm.weight "embed" : tensor<1000x64xf32>
  %l = llm.linear %e, %h : (tensor<?x64xf32>, tensor<1000x64xf32>) -> tensor<?x1000xf32>
  return %l : tensor<?x1000xf32>
}
