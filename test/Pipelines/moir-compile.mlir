// moir-compile: a whole compile to any phase for any target, with moirc's
// options (one options list, Options.def), as moirc runs it.
// RUN: moir-opt %s --moir-compile="target=cpu phase=linalg cpu-threads=2 moe-fuse-experts=false" | FileCheck %s --check-prefix=LINALG
// RUN: moir-opt %s --moir-compile="target=cpu phase=graph" | FileCheck %s --check-prefix=GRAPH
// A pipeline that cannot be built fails with its reason, never runs nothing.
// RUN: not moir-opt %s --moir-compile="target=cpu phase=kernels" 2>&1 | FileCheck %s --check-prefix=NOPHASE
// RUN: not moir-opt %s --moir-compile="target=tpu" 2>&1 | FileCheck %s --check-prefix=NOTARGET
// RUN: not moir-opt %s --moir-compile="quantize-kv-cache=int4" 2>&1 | FileCheck %s --check-prefix=BADOPTION
// RUN: not moir-opt %s --moir-gpu-device-lowering="target=tpu" 2>&1 | FileCheck %s --check-prefix=BADGPU

// LINALG: moir.lowering_config = #moir.lowering_config<parallel = true, work_items = 4,
// LINALG-NOT: moe.
// LINALG: func.func private @forward
// GRAPH: moe.fused_experts
// NOPHASE: moir-compile: target 'cpu' has no phase 'kernels'
// NOTARGET: moir-compile: unknown target 'tpu'
// BADOPTION: moir-compile: unknown --quantize-kv-cache 'int4' (known: none, int8, fp8)
// BADGPU: moir-gpu-device-lowering: unknown GPU target 'tpu'
func.func @forward(%x: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %r = llm.weight "router" : tensor<4x16xf32>
  %g = llm.weight "gate" : tensor<4x24x16xf32>
  %u = llm.weight "up" : tensor<4x24x16xf32>
  %d = llm.weight "down" : tensor<4x16x24xf32>
  %y = moe.layer %x router %r experts(%g, %u, %d) routing <top_k = 2, scoring = softmax> activation silu
         : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
