// moirc stops after the phase asked for and dumps its IR.
// RUN: moirc %s --compile-to=input | FileCheck %s --check-prefix=INPUT
// RUN: moirc %s --compile-to=graph | FileCheck %s --check-prefix=FUSED
// RUN: moirc %s | FileCheck %s --check-prefix=FUSED
// RUN: moirc %s --moe-fuse-router=false --moe-fuse-experts=false | FileCheck %s --check-prefix=GRAPH
// RUN: not moirc %s --compile-to=cubin 2>&1 | FileCheck %s --check-prefix=BADPHASE
// RUN: not moirc %S/Inputs/embedded-weight.mlir --compile-to=input 2>&1 | FileCheck %s --check-prefix=CONTRACT

// INPUT: moe.layer
// GRAPH-NOT: moe.layer
// GRAPH: moe.route
// GRAPH: moe.combine
// FUSED-NOT: moe.layer
// FUSED: moe.fused_route
// FUSED: moe.fused_experts
// BADPHASE: moirc: error: unknown phase 'cubin' for --compile-to (known: input, graph, linalg, kernels, device, binary, llvm)
// CONTRACT: embedded-weight.mlir:{{[0-9]+}}:{{[0-9]+}}: error: embeds a 8192-element constant
// CONTRACT: moirc: {{.*}}embedded-weight.mlir: compiling to the 'input' phase failed

func.func @f(%x: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %r = llm.weight "router" : tensor<4x16xf32>
  %g = llm.weight "gate" : tensor<4x24x16xf32>
  %u = llm.weight "up" : tensor<4x24x16xf32>
  %d = llm.weight "down" : tensor<4x16x24xf32>
  %y = moe.layer %x router %r experts(%g, %u, %d) routing <top_k = 2, scoring = softmax> activation silu
         : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
