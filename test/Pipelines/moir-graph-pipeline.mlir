// The graph pipeline over whole sample models of each family: the input
// contract holds, composite ops are gone, the steps are there.
// The MoE steps as decomposed (fusions off), then fused (the default).
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family mixtral | moir-opt --moir-graph-pipeline="moe-fuse-router=false moe-fuse-experts=false" | FileCheck %s --check-prefixes=CHECK,MIXTRAL --implicit-check-not=moe.layer
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family qwen2-moe | moir-opt --moir-graph-pipeline="moe-fuse-router=false moe-fuse-experts=false" | FileCheck %s --check-prefixes=CHECK,QWEN --implicit-check-not=moe.layer
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family deepseek-v3 --layers 3 | moir-opt --moir-graph-pipeline="moe-fuse-router=false moe-fuse-experts=false" | FileCheck %s --check-prefixes=CHECK,DSV3 --implicit-check-not=moe.layer --implicit-check-not=mla.attention
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family mixtral | moir-opt --moir-graph-pipeline | FileCheck %s --check-prefixes=CHECK,MIXTRAL-FUSED --implicit-check-not=moe.layer --implicit-check-not=moe.route --implicit-check-not=moe.dispatch --implicit-check-not=moe.expert_ffn --implicit-check-not=moe.combine
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family qwen2-moe | moir-opt --moir-graph-pipeline | FileCheck %s --check-prefixes=CHECK,QWEN-FUSED --implicit-check-not=moe.layer --implicit-check-not=moe.combine
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family deepseek-v3 --layers 3 | moir-opt --moir-graph-pipeline | FileCheck %s --check-prefixes=CHECK,DSV3-FUSED --implicit-check-not=moe.layer --implicit-check-not=moe.route --implicit-check-not=moe.combine
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family apertus | moir-opt --moir-graph-pipeline | FileCheck %s --check-prefixes=CHECK,APERTUS
// With decomposition off the composites stay.
// RUN: %python %moir_src/python/moir_samples/gen_model_ir.py --family deepseek-v3 | moir-opt --moir-graph-pipeline="decompose=false" | FileCheck %s --check-prefix=COMPOSITE

// CHECK: func.func @forward
// APERTUS: %[[EMBED:.*]] = llm.weight "model.embed_tokens.weight"
// CHECK: llm.embedding

// MIXTRAL: llm.weight "model.layers.0.block_sparse_moe.gate.weight" : tensor<8x128xf32>
// MIXTRAL: llm.stacked_weight ["model.layers.0.block_sparse_moe.experts.0.w1.weight", {{.*}}, "model.layers.0.block_sparse_moe.experts.7.w1.weight"] : tensor<8x352x128xf32>
// MIXTRAL: llm.attention {{.*}} flash :
// MIXTRAL: moe.route {{.*}} routing <top_k = 2, scoring = softmax, norm_topk_prob = true>
// MIXTRAL: moe.dispatch
// MIXTRAL: moe.expert_ffn silu
// MIXTRAL: moe.combine
// MIXTRAL: llm.weight "lm_head.weight"

// flash-attention is on by default.
// MIXTRAL-FUSED: llm.attention {{.*}} flash :
// MIXTRAL-FUSED: %[[W:.*]], %[[IDS:.*]] = moe.fused_route %{{.*}}, %{{.*}} routing <top_k = 2, scoring = softmax, norm_topk_prob = true>
// MIXTRAL-FUSED: moe.fused_experts silu %{{.*}}, %[[IDS]], %[[W]] experts(%{{.*}}, %{{.*}}, %{{.*}}) :
// MIXTRAL-FUSED: llm.weight "lm_head.weight"

// Qwen2-MoE's shared expert has its sigmoid gate: it stays a dense FFN.
// QWEN-FUSED: moe.fused_route
// QWEN-FUSED: moe.fused_experts silu {{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) :
// QWEN-FUSED: llm.activation sigmoid

// DeepSeek-V3's shared expert (ffn 2 x the routed width) folds in.
// DSV3-FUSED: moe.fused_route {{.*}} bias {{.*}} routing <top_k = 3, scoring = sigmoid, method = noaux_tc
// DSV3-FUSED: moe.fused_experts silu {{.*}} shared(

// QWEN: llm.linear {{.*}} : (tensor<?x128xf32>, tensor<128x128xf32>, tensor<128xf32>) -> tensor<?x128xf32>
// QWEN: moe.route {{.*}} routing <top_k = 4, scoring = softmax>
// QWEN: moe.combine
// QWEN: llm.activation sigmoid
// QWEN: linalg.broadcast

// The first layer is dense, the later ones MoE; attention goes through the
// latent caches; mla-absorb-weights chose decode absorbed, prefill
// materialized (rank 64 > (nope + v) / 2).
// DSV3: llm.kv_cache_update {{.*}} into tensor<256x64xf32>
// DSV3: llm.kv_cache_update {{.*}} into tensor<256x16xf32>
// DSV3: mla.attend {{.*}} form = absorbed prefill = materialized flash
// DSV3: llm.glu silu {{.*}} : tensor<?x384xf32>
// DSV3: mla.attend
// DSV3: moe.route {{.*}} bias {{.*}} routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.500000e+00 : f64>
// DSV3: mla.attend
// DSV3: moe.route

// QK-norm over the head dimension, xIELU MLP, tied embeddings.
// APERTUS: llm.rms_norm {{.*}} : tensor<?x4x32xf32>, tensor<32xf32>
// APERTUS: llm.rope {{.*}} scaling = llama3
// APERTUS: llm.xielu
// APERTUS-NOT: lm_head
// APERTUS: llm.linear %{{.*}}, %[[EMBED]] : (tensor<?x128xf32>, tensor<1000x128xf32>) -> tensor<?x1000xf32>

// COMPOSITE: mla.attention
// COMPOSITE: moe.layer
