// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels | FileCheck %s
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="ops=rms_norm" | FileCheck %s --check-prefix=ONLY
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="ops=glu,linear" | FileCheck %s --check-prefix=UNFUSED
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="device=opencl" | FileCheck %s --check-prefix=DEVICE
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="device=vulkan" | FileCheck %s --check-prefix=VULKAN
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="ops=attention,mla" | FileCheck %s --check-prefix=MLA
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="ops=mla device=vulkan" | FileCheck %s --check-prefix=MLADEV
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="int8-dot=true" | FileCheck %s --check-prefix=INT8
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="int8-dot=true int8-decode=all" | FileCheck %s --check-prefix=ALL
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="int8-dot=true int8-decode=none" | FileCheck %s --check-prefix=NONE
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="int8-dot=true device=opencl" | FileCheck %s --check-prefix=DEVICE
// RUN: moir-opt %s --split-input-file --moir-halide-select-kernels="int8-dot=true int8-decode=all int8-decode-bits=16" | FileCheck %s --check-prefix=BITS16
// RUN: not moir-opt %s --split-input-file --moir-halide-select-kernels="int8-dot=true int8-decode-bits=12" 2>&1 | FileCheck %s --check-prefix=BADBITS
// BADBITS: int8-decode-bits must be 8 or 16, not 12

// An RMSNorm becomes a Halide kernel with its epsilon and offset; its layer is kept.
// CHECK-LABEL: func.func @norm
// CHECK: %[[N:.*]] = moir.halide_call "moir_hl_rms_norm_{{[0-9a-f]+}}" "rms_norm"(%arg0, %arg1) {epsilon = 1.000000e-05 : f64, offset = 1.000000e+00 : f64} {moir.layer = 3 : i64}
// CHECK-NOT: llm.rms_norm
// CHECK: return %[[N]]
// On a device every call says so (and gets callees of its own).
// DEVICE-LABEL: func.func @norm
// DEVICE: moir.halide_call "moir_hl_rms_norm_{{[0-9a-f]+}}" "rms_norm"(%arg0, %arg1) {device = "opencl", epsilon = 1.000000e-05 : f64, offset = 1.000000e+00 : f64}
// ONLY-LABEL: func.func @norm
// ONLY: moir.halide_call {{.*}} "rms_norm"
func.func @norm(%x: tensor<?x64xf32>, %w: tensor<64xbf16>) -> tensor<?x64xf32> {
  %n = llm.rms_norm %x, %w epsilon = 1.0e-05 offset = 1.0 {moir.layer = 3 : i64} : tensor<?x64xf32>, tensor<64xbf16>
  return %n : tensor<?x64xf32>
}

// -----

// On a device, the operands that are weights (llm.weight) are `resident`:
// copied there on the first call and kept (the norm's input is not).
// DEVICE-LABEL: func.func @resident
// DEVICE: moir.halide_call {{.*}} "rms_norm"(%arg0, %[[NW:.*]]) {device = "opencl", {{.*}}} {resident = array<i64: 1>}
// DEVICE: moir.halide_call {{.*}} "linear"(%{{.*}}, %[[W:.*]]) {device = "opencl", variant = "decode"} {resident = array<i64: 1>}
// CHECK-LABEL: func.func @resident
// CHECK-NOT: resident
// CHECK: return
func.func @resident(%x: tensor<1x64xf32>) -> tensor<1x32xf32> {
  %nw = llm.weight "norm" : tensor<64xf32>
  %w = llm.weight "w" : tensor<32x64xf32>
  %n = llm.rms_norm %x, %nw epsilon = 1.0e-05 : tensor<1x64xf32>, tensor<64xf32>
  %y = llm.linear %n, %w : (tensor<1x64xf32>, tensor<32x64xf32>) -> tensor<1x32xf32>
  return %y : tensor<1x32xf32>
}

// -----

// A linear over a dynamic token count: a decode kernel below 4 tokens, a
// prefill kernel from 4, two callees; identical linears share them.
// CHECK-LABEL: func.func @linear
// CHECK: %[[T:.*]] = tensor.dim %arg0, %c0
// CHECK: %[[FEW:.*]] = arith.cmpi slt, %[[T]], %c4
// CHECK: scf.if %[[FEW]] -> (tensor<?x32xf32>)
// CHECK: moir.halide_call "[[DEC:moir_hl_linear_[0-9a-f]+]]" "linear"(%arg0, %arg1) {variant = "decode"}
// CHECK: } else {
// CHECK: moir.halide_call "[[PRE:moir_hl_linear_[0-9a-f]+]]" "linear"(%arg0, %arg1) {variant = "prefill"}
// CHECK: scf.if
// CHECK: moir.halide_call "[[DEC]]"
// CHECK: moir.halide_call "[[PRE]]"
// ONLY-LABEL: func.func @linear
// ONLY-NOT: moir.halide_call
// ONLY: llm.linear
func.func @linear(%x: tensor<?x64xf32>, %w: tensor<32x64xbf16>) -> (tensor<?x32xf32>, tensor<?x32xf32>) {
  %a = llm.linear %x, %w : (tensor<?x64xf32>, tensor<32x64xbf16>) -> tensor<?x32xf32>
  %b = llm.linear %x, %w : (tensor<?x64xf32>, tensor<32x64xbf16>) -> tensor<?x32xf32>
  return %a, %b : tensor<?x32xf32>, tensor<?x32xf32>
}

// -----

// One static decode token: the decode kernel alone, no branch.
// CHECK-LABEL: func.func @one_token
// CHECK-NOT: scf.if
// CHECK: moir.halide_call {{.*}} "linear"(%arg0, %arg1, %arg2) {variant = "decode"}
func.func @one_token(%x: tensor<1x64xf32>, %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> tensor<1x32xf32> {
  %y = llm.linear %x, %w, %b : (tensor<1x64xf32>, tensor<32x64xf32>, tensor<32xf32>) -> tensor<1x32xf32>
  return %y : tensor<1x32xf32>
}

// -----

// GLU and activations with a Halide form; erf's gelu stays on MLIR.
// CHECK-LABEL: func.func @ffn
// CHECK: moir.halide_call {{.*}} "glu"(%arg0, %arg1) {activation = "silu"}
// CHECK: moir.halide_call {{.*}} "activation"(%arg0) {activation = "gelu_tanh"}
// CHECK: llm.activation gelu
func.func @ffn(%g: tensor<?x16xf32>, %u: tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  %h = llm.glu silu %g, %u : tensor<?x16xf32>
  %t = llm.activation gelu_tanh %g : tensor<?x16xf32>
  %e = llm.activation gelu %g : tensor<?x16xf32>
  return %h, %t, %e : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// RoPE carries its frequency table (theta 10000, 8 rotated dimensions: 4
// frequencies) and the attention factor.
// CHECK-LABEL: func.func @rope
// CHECK: moir.halide_call {{.*}} "rope"(%arg0, %arg1) {dim = 8 : i64, factor = 1.000000e+00 : f64, interleaved = 0 : i64, inv_freq = array<f64: 1.000000e+00, 0.10000000149011612, 0.0099999997764825821, 0.0010000000474974513>}
func.func @rope(%q: tensor<?x2x8xf32>, %p: tensor<?xi64>) -> tensor<?x2x8xf32> {
  %r = llm.rope %q, %p with <theta = 10000.0, dim = 8> : tensor<?x2x8xf32>, tensor<?xi64>
  return %r : tensor<?x2x8xf32>
}

// -----

// A quantized weight in a packed form the kernels decode (i8, u4 or FP8 E4M3
// codes, group scales) goes to Halide as it is (moir-lower-to-linalg expands
// it into codes and scales), on the host and on a device (whose kernels read
// f16 scales and FP8 codes as bits).
// CHECK-LABEL: func.func @quantized
// CHECK: moir.halide_call "moir_hl_linear_{{[0-9a-f]+}}" "linear"(%arg0, %{{.*}}) {variant = "decode"} : (tensor<?x64xf32>, !llm.qtensor<32x64xi8
// CHECK: moir.halide_call "moir_hl_linear_{{[0-9a-f]+}}" "linear"(%arg0, %{{.*}}) {variant = "decode"} : (tensor<?x64xf32>, !llm.qtensor<32x64xf8E4M3FN
// CHECK-NOT: llm.linear
// DEVICE-LABEL: func.func @quantized
// DEVICE: moir.halide_call "moir_hl_linear_{{[0-9a-f]+}}" "linear"(%arg0, %{{.*}}) {device = "opencl", variant = "decode"} {resident = array<i64: 1>} : (tensor<?x64xf32>, !llm.qtensor<32x64xi8
// DEVICE: moir.halide_call "moir_hl_linear_{{[0-9a-f]+}}" "linear"(%arg0, %{{.*}}) {device = "opencl", variant = "decode"} {resident = array<i64: 1>} : (tensor<?x64xf32>, !llm.qtensor<32x64xf8E4M3FN
// DEVICE-NOT: llm.linear
// VULKAN-LABEL: func.func @quantized
// VULKAN: moir.halide_call {{.*}} "linear"(%arg0, %{{.*}}) {device = "vulkan", variant = "decode"} {resident = array<i64: 1>} : (tensor<?x64xf32>, !llm.qtensor<32x64xi8
// VULKAN: moir.halide_call {{.*}} "linear"(%arg0, %{{.*}}) {device = "vulkan", variant = "decode"} {resident = array<i64: 1>} : (tensor<?x64xf32>, !llm.qtensor<32x64xf8E4M3FN
// VULKAN-NOT: llm.linear
func.func @quantized(%x: tensor<?x64xf32>) -> (tensor<?x32xf32>, tensor<?x32xf32>) {
  %q = llm.weight "w" scales "w_scale" : !llm.qtensor<32x64xi8, #llm.quant<kind = per_channel, axis = 0>>
  %y = llm.linear %x, %q : (tensor<?x64xf32>, !llm.qtensor<32x64xi8, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<?x32xf32>
  %f = llm.weight "f" scales "f_scale" : !llm.qtensor<32x64xf8E4M3FN, #llm.quant<kind = per_channel, axis = 0>>
  %z = llm.linear %x, %f : (tensor<?x64xf32>, !llm.qtensor<32x64xf8E4M3FN, #llm.quant<kind = per_channel, axis = 0>>) -> tensor<?x32xf32>
  return %y, %z : tensor<?x32xf32>, tensor<?x32xf32>
}

// -----

// A GLU whose only use is a linear's input becomes one kernel with it (the
// FFN's down projection); with ops=glu,linear they stay two kernels.
// CHECK-LABEL: func.func @down
// CHECK-NOT: "glu"(
// CHECK: moir.halide_call "[[DEC:moir_hl_glu_linear_[0-9a-f]+]]" "glu_linear"(%arg0, %arg1, %arg2) {activation = "silu", variant = "decode"}
// CHECK: moir.halide_call "[[PRE:moir_hl_glu_linear_[0-9a-f]+]]" "glu_linear"(%arg0, %arg1, %arg2) {activation = "silu", variant = "prefill"}
// UNFUSED-LABEL: func.func @down
// UNFUSED: %[[H:.*]] = moir.halide_call {{.*}} "glu"(%arg0, %arg1) {activation = "silu"}
// UNFUSED: moir.halide_call {{.*}} "linear"(%[[H]], %arg2) {variant = "decode"}
func.func @down(%g: tensor<?x48xf32>, %u: tensor<?x48xf32>, %w: tensor<16x48xbf16>) -> tensor<?x16xf32> {
  %h = llm.glu silu %g, %u : tensor<?x48xf32>
  %y = llm.linear %h, %w : (tensor<?x48xf32>, tensor<16x48xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// The fused router: one kernel, two results (weights, ids), the routing as
// params.
// CHECK-LABEL: func.func @router
// CHECK: %[[R:.*]]:2 = moir.halide_call "moir_hl_router_{{[0-9a-f]+}}" "router"(%arg0, %arg1, %arg2) {method = "noaux_tc", n_group = 4 : i64, norm_topk_prob = 1 : i64, scaling = 2.500000e+00 : f64, sigmoid = 1 : i64, top_k = 3 : i64, topk_group = 2 : i64} : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
// CHECK-NOT: moe.fused_route
// CHECK: return %[[R]]#0, %[[R]]#1
// ONLY-LABEL: func.func @router
// ONLY: moe.fused_route
func.func @router(%x: tensor<?x64xf32>, %w: tensor<16x64xbf16>, %b: tensor<16xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>) {
  %r, %ids = moe.fused_route %x, %w bias %b routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5>
      : tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return %r, %ids : tensor<?x3xf32>, tensor<?x3xi32>
}

// -----

// The fused experts with float weights and a shared expert: kernels of
// nine inputs, one for decode and one for prefill, as a linear's.
// CHECK-LABEL: func.func @experts
// CHECK: %[[Y:.*]] = scf.if %{{.*}} -> (tensor<?x64xf32>)
// CHECK: moir.halide_call "[[DEC:moir_hl_experts_[0-9a-f]+]]" "experts"(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5, %arg6, %arg7, %arg8) {activation = "silu", variant = "decode"}
// CHECK: } else {
// CHECK: moir.halide_call "[[PRE:moir_hl_experts_[0-9a-f]+]]" "experts"(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5, %arg6, %arg7, %arg8) {activation = "silu", variant = "prefill"}
// CHECK-NOT: moe.fused_experts
// CHECK: return %[[Y]]
// UNFUSED-LABEL: func.func @experts
// UNFUSED: moe.fused_experts
// On OpenCL too, and on Vulkan where the hidden rows (FFN x top-k = 64
// floats a token; the shared expert's 64) are multiples of 16 floats: the
// kernel stores them at the root there (docs/halide.md).
// DEVICE-LABEL: func.func @experts
// DEVICE: moir.halide_call {{.*}} "experts"({{.*}}) {activation = "silu", device = "opencl", variant = "decode"}
// VULKAN-LABEL: func.func @experts
// VULKAN: moir.halide_call {{.*}} "experts"({{.*}}) {activation = "silu", device = "vulkan", variant = "decode"}
func.func @experts(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                   %wg: tensor<8x32x64xbf16>, %wu: tensor<8x32x64xbf16>, %wd: tensor<8x64x32xbf16>,
                   %sg: tensor<64x64xf32>, %su: tensor<64x64xf32>, %sd: tensor<64x64xf32>) -> tensor<?x64xf32> {
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) shared(%sg, %su, %sd)
      : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x32x64xbf16>,
         tensor<8x32x64xbf16>, tensor<8x64x32xbf16>, tensor<64x64xf32>,
         tensor<64x64xf32>, tensor<64x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Quantized experts: the packed forms go to Halide too (on the host and on
// a device, where the stacked weight is resident; the function's arguments
// are not weights; on Vulkan FFN 32 x top-2 is a multiple of 16).
// CHECK-LABEL: func.func @quantized_experts
// CHECK: moir.halide_call "moir_hl_experts_{{[0-9a-f]+}}" "experts"(%arg0, %arg1, %arg2, %{{.*}}, %arg3, %arg4) {activation = "silu", variant = "decode"}
// CHECK-NOT: moe.fused_experts
// DEVICE-LABEL: func.func @quantized_experts
// DEVICE: moir.halide_call "moir_hl_experts_{{[0-9a-f]+}}" "experts"(%arg0, %arg1, %arg2, %{{.*}}, %arg3, %arg4) {activation = "silu", device = "opencl", variant = "decode"} {resident = array<i64: 3>}
// DEVICE-NOT: moe.fused_experts
// VULKAN-LABEL: func.func @quantized_experts
// VULKAN: moir.halide_call {{.*}} "experts"(%arg0, %arg1, %arg2, %{{.*}}, %arg3, %arg4) {activation = "silu", device = "vulkan", variant = "decode"} {resident = array<i64: 3>}
func.func @quantized_experts(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                             %wu: tensor<2x32x64xf32>, %wd: tensor<2x64x32xf32>) -> tensor<?x64xf32> {
  %wg = llm.stacked_weight ["g0", "g1"] scales ["g0_s", "g1_s"] : !llm.qtensor<2x32x64xi8, #llm.quant<kind = per_channel, axis = 1>>
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd)
      : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, !llm.qtensor<2x32x64xi8, #llm.quant<kind = per_channel, axis = 1>>,
         tensor<2x32x64xf32>, tensor<2x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// FFN 30 x top-2: 60 floats a token, not a multiple of 16: on MLIR on Vulkan,
// on Halide elsewhere.
// VULKAN-LABEL: func.func @experts_odd
// VULKAN-NOT: "experts"
// VULKAN: moe.fused_experts
// DEVICE-LABEL: func.func @experts_odd
// DEVICE: "experts"
func.func @experts_odd(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                       %wg: tensor<8x30x64xf32>, %wu: tensor<8x30x64xf32>, %wd: tensor<8x64x30xf32>) -> tensor<?x64xf32> {
  %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd)
      : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x30x64xf32>,
         tensor<8x30x64xf32>, tensor<8x64x30xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Attention over a float cache: its scale and window as params; on a device
// too (caches that no llm.kv_cache_update writes are copied per call).
// CHECK-LABEL: func.func @attention
// CHECK: moir.halide_call "moir_hl_attention_{{[0-9a-f]+}}" "attention"(%arg0, %arg1, %arg2, %arg3) {scale = 1.250000e-01 : f64, window = 16 : i64}
// CHECK-NOT: llm.attention
// DEVICE-LABEL: func.func @attention
// DEVICE: moir.halide_call "moir_hl_attention_{{[0-9a-f]+}}" "attention"(%arg0, %arg1, %arg2, %arg3) {device = "opencl", scale = 1.250000e-01 : f64, window = 16 : i64} :
// DEVICE-NOT: llm.attention
// VULKAN-LABEL: func.func @attention
// VULKAN: moir.halide_call {{.*}} "attention"(%arg0, %arg1, %arg2, %arg3) {device = "vulkan", scale = 1.250000e-01 : f64, window = 16 : i64} :
// ONLY-LABEL: func.func @attention
// ONLY: llm.attention
func.func @attention(%q: tensor<?x8x64xf32>, %k: tensor<128x2x64xbf16>, %v: tensor<128x2x64xbf16>, %p: tensor<?xi64>) -> tensor<?x8x64xf32> {
  %o = llm.attention %q, %k, %v, %p scale = 0.125 window = 16 flash : (tensor<?x8x64xf32>, tensor<128x2x64xbf16>, tensor<128x2x64xbf16>, tensor<?xi64>) -> tensor<?x8x64xf32>
  return %o : tensor<?x8x64xf32>
}

// -----

// On OpenCL and Vulkan the caches a forward writes stay on the device:
// attention (and MLA, and MLIR's prefill beside a decode-only kernel) reads
// each through a moir.halide_sync_rows of the rows the update wrote,
// resident. On the host, the caches are read as the update leaves them.
// DEVICE-LABEL: func.func @cache_rows
// DEVICE: %[[C0:.*]] = arith.constant 0 : index
// DEVICE: %[[K:.*]] = llm.kv_cache_update %arg1 into %arg3[%arg5]
// DEVICE: %[[V:.*]] = llm.kv_cache_update %arg2 into %arg4[%arg5]
// DEVICE: %[[KN:.*]] = tensor.dim {moir.layer = 3 : i64} %arg1, %[[C0]] : tensor<?x2x64xf32>
// DEVICE: %[[KS:.*]] = moir.halide_sync_rows %[[K]][%arg5, %[[KN]]] on "opencl" {moir.layer = 3 : i64} : tensor<128x2x64xf32>
// DEVICE: %[[VN:.*]] = tensor.dim {moir.layer = 3 : i64} %arg2, %[[C0]] : tensor<?x2x64xf32>
// DEVICE: %[[VS:.*]] = moir.halide_sync_rows %[[V]][%arg5, %[[VN]]] on "opencl" {moir.layer = 3 : i64} : tensor<128x2x64xf32>
// DEVICE: moir.halide_call {{.*}} "attention"(%arg0, %[[KS]], %[[VS]], %arg6) {device = "opencl", scale = 1.250000e-01 : f64} {moir.layer = 3 : i64, resident = array<i64: 1, 2>}
// DEVICE: return {{.*}}, %[[K]], %[[V]]
// VULKAN-LABEL: func.func @cache_rows
// VULKAN: %[[KS:.*]] = moir.halide_sync_rows {{.*}} on "vulkan" {moir.layer = 3 : i64} : tensor<128x2x64xf32>
// VULKAN: %[[VS:.*]] = moir.halide_sync_rows {{.*}} on "vulkan" {moir.layer = 3 : i64} : tensor<128x2x64xf32>
// VULKAN: moir.halide_call {{.*}} "attention"(%arg0, %[[KS]], %[[VS]], %arg6) {device = "vulkan", scale = 1.250000e-01 : f64} {moir.layer = 3 : i64, resident = array<i64: 1, 2>} :
// CHECK-LABEL: func.func @cache_rows
// CHECK-NOT: halide_sync_rows
// CHECK-NOT: resident
func.func @cache_rows(%q: tensor<?x8x64xf32>, %kn: tensor<?x2x64xf32>, %vn: tensor<?x2x64xf32>,
                      %k: tensor<128x2x64xf32>, %v: tensor<128x2x64xf32>, %off: index, %p: tensor<?xi64>)
    -> (tensor<?x8x64xf32>, tensor<128x2x64xf32>, tensor<128x2x64xf32>) {
  %k2 = llm.kv_cache_update %kn into %k[%off] {moir.layer = 3 : i64} : tensor<?x2x64xf32> into tensor<128x2x64xf32>
  %v2 = llm.kv_cache_update %vn into %v[%off] {moir.layer = 3 : i64} : tensor<?x2x64xf32> into tensor<128x2x64xf32>
  %o = llm.attention %q, %k2, %v2, %p scale = 0.125 flash {moir.layer = 3 : i64} : (tensor<?x8x64xf32>, tensor<128x2x64xf32>, tensor<128x2x64xf32>, tensor<?xi64>) -> tensor<?x8x64xf32>
  return %o, %k2, %v2 : tensor<?x8x64xf32>, tensor<128x2x64xf32>, tensor<128x2x64xf32>
}

// -----

// A cache whose bytes are not a multiple of 64 (5x2x3 f32: 120) stays per
// call on Vulkan (Halide 21's Vulkan allocator), and is kept on OpenCL.
// DEVICE-LABEL: func.func @cache_rows_odd
// DEVICE: moir.halide_sync_rows {{.*}} on "opencl"
// VULKAN-LABEL: func.func @cache_rows_odd
// VULKAN-NOT: halide_sync_rows
// VULKAN: moir.halide_call {{.*}} "attention"(%arg0, %{{.*}}, %{{.*}}, %arg6) {device = "vulkan", scale = 5.000000e-01 : f64} :
func.func @cache_rows_odd(%q: tensor<?x6x3xf32>, %kn: tensor<?x2x3xf32>, %vn: tensor<?x2x3xf32>,
                          %k: tensor<5x2x3xf32>, %v: tensor<5x2x3xf32>, %off: index, %p: tensor<?xi64>)
    -> (tensor<?x6x3xf32>, tensor<5x2x3xf32>, tensor<5x2x3xf32>) {
  %k2 = llm.kv_cache_update %kn into %k[%off] : tensor<?x2x3xf32> into tensor<5x2x3xf32>
  %v2 = llm.kv_cache_update %vn into %v[%off] : tensor<?x2x3xf32> into tensor<5x2x3xf32>
  %o = llm.attention %q, %k2, %v2, %p scale = 0.5 flash : (tensor<?x6x3xf32>, tensor<5x2x3xf32>, tensor<5x2x3xf32>, tensor<?xi64>) -> tensor<?x6x3xf32>
  return %o, %k2, %v2 : tensor<?x6x3xf32>, tensor<5x2x3xf32>, tensor<5x2x3xf32>
}

// -----

// Absorbed MLA (opt-in: not in the default ops, which leave it on MLIR): one
// Halide kernel for every token count; where prefill asks for the
// materialized form (a cost decision), the kernel takes decode (fewer than 4
// tokens) and the op stays on MLIR for prefill.
// CHECK-LABEL: func.func @mla
// CHECK-NOT: moir.halide_call
// MLA-LABEL: func.func @mla
// MLA: moir.halide_call "[[K:moir_hl_mla_[0-9a-f]+]]" "mla"(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5) {scale = 2.000000e-01 : f64}
// MLA-NOT: mla.attend
// MLA: %[[FEW:.*]] = arith.cmpi slt
// MLA: scf.if %[[FEW]] -> (tensor<?x4x16xf32>) {
// MLA: moir.halide_call "[[K]]" "mla"
// MLA: } else {
// MLA: mla.attend {{.*}} form = absorbed prefill = materialized
// ONLY-LABEL: func.func @mla
// ONLY-NOT: moir.halide_call
// On a device too.
// MLADEV-LABEL: func.func @mla
// MLADEV: moir.halide_call "{{moir_hl_mla_[0-9a-f]+}}" "mla"(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5) {device = "vulkan", scale = 2.000000e-01 : f64}
func.func @mla(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>,
               %pos: tensor<?xi64>, %w: tensor<128x32xf32>) -> (tensor<?x4x16xf32>, tensor<?x4x16xf32>) {
  %a = mla.attend %qn, %qp, %c, %r, %pos, %w
      config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      scale = 0.2 form = absorbed
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  %b = mla.attend %qn, %qp, %c, %r, %pos, %w
      config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>
      scale = 0.2 form = absorbed prefill = materialized
      : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return %a, %b : tensor<?x4x16xf32>, tensor<?x4x16xf32>
}

// -----

// With int8-dot, integer-coded weights multiply int8 activations: every one
// in prefill; in decode the 4-bit codes by default (int8-decode=nibbles), all
// of them with int8-decode=all, none with none. Float and FP8 weights never;
// the int8 param names the inputs.
// CHECK-LABEL: func.func @int8_inputs
// CHECK-NOT: int8 =
// INT8-LABEL: func.func @int8_inputs
// INT8: "linear"(%arg0, %{{.*}}) {variant = "decode"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi8
// INT8: "linear"(%arg0, %{{.*}}) {int8 = "1", variant = "prefill"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi8
// INT8: "linear"(%arg0, %{{.*}}) {int8 = "1", variant = "decode"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi4
// INT8: "linear"(%arg0, %{{.*}}) {int8 = "1", variant = "prefill"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi4
// INT8: "linear"(%arg0, %arg1) {variant = "decode"} : (tensor<?x256xf32>, tensor<64x256xbf16>)
// INT8: "linear"(%arg0, %arg1) {variant = "prefill"} : (tensor<?x256xf32>, tensor<64x256xbf16>)
// ALL-LABEL: func.func @int8_inputs
// ALL: {int8 = "1", variant = "decode"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi8
// ALL: {int8 = "1", variant = "prefill"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi8
// With int8-decode-bits=16 the decode kernels' int8 activations carry
// residual codes (16 bits: an int8_bits param); prefill's stay 8-bit.
// BITS16-LABEL: func.func @int8_inputs
// BITS16: {int8 = "1", int8_bits = 16 : i64, variant = "decode"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi8
// BITS16: {int8 = "1", variant = "prefill"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi8
// BITS16: {int8 = "1", int8_bits = 16 : i64, variant = "decode"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi4
// BITS16: {int8 = "1", variant = "prefill"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi4
// BITS16: "linear"(%arg0, %arg1) {variant = "decode"} : (tensor<?x256xf32>, tensor<64x256xbf16>)
// NONE-LABEL: func.func @int8_inputs
// NONE: {variant = "decode"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi4
// NONE: {int8 = "1", variant = "prefill"} : (tensor<?x256xf32>, !llm.qtensor<64x256xi4
// DEVICE-LABEL: func.func @int8_inputs
// DEVICE-NOT: int8 =
func.func @int8_inputs(%x: tensor<?x256xf32>, %f: tensor<64x256xbf16>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>) {
  %w8 = llm.weight "w8" : !llm.qtensor<64x256xi8, #llm.quant<kind = gguf, format = q8_0>>
  %a = llm.linear %x, %w8 : (tensor<?x256xf32>, !llm.qtensor<64x256xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x64xf32>
  %w4 = llm.weight "w4" : !llm.qtensor<64x256xi4, #llm.quant<kind = gguf, format = q4_k>>
  %b = llm.linear %x, %w4 : (tensor<?x256xf32>, !llm.qtensor<64x256xi4, #llm.quant<kind = gguf, format = q4_k>>) -> tensor<?x64xf32>
  %c = llm.linear %x, %f : (tensor<?x256xf32>, tensor<64x256xbf16>) -> tensor<?x64xf32>
  return %a, %b, %c : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// The experts' gate and up go to the int8 path together; down on its own
// (here decode takes the 4-bit gate/up, not the 8-bit down).
// INT8-LABEL: func.func @int8_experts
// INT8: "experts"({{.*}}) {activation = "silu", int8 = "3,4", variant = "decode"}
// INT8: "experts"({{.*}}) {activation = "silu", int8 = "3,4,5", variant = "prefill"}
func.func @int8_experts(%x: tensor<?x256xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> tensor<?x256xf32> {
  %g = llm.weight "g" : !llm.qtensor<2x64x256xi4, #llm.quant<kind = gguf, format = q4_k>>
  %u = llm.weight "u" : !llm.qtensor<2x64x256xi4, #llm.quant<kind = gguf, format = q4_k>>
  %d = llm.weight "d" : !llm.qtensor<2x256x64xi8, #llm.quant<kind = gguf, format = q8_0>>
  %y = moe.fused_experts silu %x, %ids, %w experts(%g, %u, %d)
      : (tensor<?x256xf32>, tensor<?x2xi32>, tensor<?x2xf32>, !llm.qtensor<2x64x256xi4, #llm.quant<kind = gguf, format = q4_k>>,
         !llm.qtensor<2x64x256xi4, #llm.quant<kind = gguf, format = q4_k>>, !llm.qtensor<2x256x64xi8, #llm.quant<kind = gguf, format = q8_0>>) -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}
