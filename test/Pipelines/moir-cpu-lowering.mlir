// The CPU lowering pipeline takes a whole model to the LLVM dialect: one
// function per distinct decoder layer (the fixture's dense layer 0 and its MoE
// layers 1 and 2, which share @layer_1), OpenMP worksharing loops for the contractions,
// the exported entry, nothing of MoIR's dialects or of linalg/scf left.
// RUN: moirc %moir_src/test/fixtures/deepseek_v3 --compile-to=llvm --cache-capacity=64 | FileCheck %s --implicit-check-not="llm." --implicit-check-not="moe." --implicit-check-not="mla." --implicit-check-not="linalg." --implicit-check-not="scf."
// And from sample IR through moir-opt's registered pipelines.
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family mixtral --layers 1 | moir-opt --moir-graph-pipeline --moir-cpu-lowering | FileCheck %s --check-prefix=SAMPLE
// CHECK-DAG: llvm.func @layer_0(
// CHECK-DAG: llvm.func @layer_1(
// CHECK-DAG: llvm.call @layer_0(
// CHECK-DAG: llvm.call @layer_1(
// CHECK-DAG: llvm.call @layer_1(
// CHECK-DAG: omp.parallel
// CHECK-DAG: llvm.func @moir_forward(%{{.*}}: !llvm.ptr)
// SAMPLE: omp.parallel
// SAMPLE: llvm.func @moir_forward(%{{.*}}: !llvm.ptr)
