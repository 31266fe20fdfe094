// RUN: moir-opt %s --split-input-file --moir-halide-keep-activations | FileCheck %s

// Values on the device: a device call's results, their reshapes, an scf.if
// whose branches both yield one, a private function's argument every call
// passes one, and its result every return yields one. Each device call
// keeps its results, reads its operands that are on the device there, and
// copies back the results a host op reads: the layer's last sum is returned
// to a call whose result the host adds (so it is copied back); the
// embedding's, which only device calls read, is not.
// CHECK-LABEL: func.func private @layer
// CHECK: "rms_norm"(%arg0, %arg1) {device = "opencl", epsilon = 1.000000e-05 : f64} {moir.device_inputs = array<i64: 0>, moir.host_results = array<i64>, moir.keep_results}
// CHECK: scf.if
// CHECK: "add"(%{{.*}}, %arg0) {device = "opencl"} {moir.device_inputs = array<i64: 0, 1>, moir.host_results = array<i64>, moir.keep_results}
// CHECK: } else {
// CHECK: "add"(%{{.*}}, %arg0) {device = "opencl", variant = "p"} {moir.device_inputs = array<i64: 0, 1>, moir.host_results = array<i64>, moir.keep_results}
// CHECK: tensor.expand_shape
// CHECK: tensor.collapse_shape
// CHECK: "add"(%{{.*}}, %{{.*}}) {device = "opencl", variant = "last"} {moir.device_inputs = array<i64: 0, 1>, moir.host_results = array<i64: 0>, moir.keep_results}
// CHECK-LABEL: func.func private @forward
// CHECK: "embed"(%arg0, %arg1) {device = "opencl"} {moir.device_inputs = array<i64>, moir.host_results = array<i64>, moir.keep_results}
// CHECK: arith.addf
// A forward frees what the table holds before it returns.
// CHECK: call @moir_hl_release_activations() : () -> ()
// CHECK-NEXT: return
// CHECK: func.func private @moir_hl_release_activations()
func.func private @layer(%x: tensor<?x8xf32>, %w: tensor<8xf32>, %n: index) -> tensor<?x8xf32> {
  %c4 = arith.constant 4 : index
  %a = moir.halide_call "moir_hl_rms_norm_1" "rms_norm"(%x, %w) {device = "opencl", epsilon = 1.0e-05 : f64} : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %few = arith.cmpi slt, %n, %c4 : index
  %b = scf.if %few -> (tensor<?x8xf32>) {
    %d = moir.halide_call "moir_hl_add_1" "add"(%a, %x) {device = "opencl"} : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    scf.yield %d : tensor<?x8xf32>
  } else {
    %p = moir.halide_call "moir_hl_add_2" "add"(%a, %x) {device = "opencl", variant = "p"} : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    scf.yield %p : tensor<?x8xf32>
  }
  %e = tensor.expand_shape %b [[0], [1, 2]] output_shape [%n, 2, 4] : tensor<?x8xf32> into tensor<?x2x4xf32>
  %c = tensor.collapse_shape %e [[0], [1, 2]] : tensor<?x2x4xf32> into tensor<?x8xf32>
  %r = moir.halide_call "moir_hl_add_3" "add"(%c, %b) {device = "opencl", variant = "last"} : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}
func.func private @forward(%t: tensor<?xi32>, %table: tensor<16x8xf32>, %w: tensor<8xf32>, %n: index) -> tensor<?x8xf32> {
  %h = moir.halide_call "moir_hl_embed_1" "embed"(%t, %table) {device = "opencl"} : (tensor<?xi32>, tensor<16x8xf32>) -> tensor<?x8xf32>
  %l0 = func.call @layer(%h, %w, %n) : (tensor<?x8xf32>, tensor<8xf32>, index) -> tensor<?x8xf32>
  %l1 = func.call @layer(%l0, %w, %n) : (tensor<?x8xf32>, tensor<8xf32>, index) -> tensor<?x8xf32>
  %s = arith.addf %l1, %l1 : tensor<?x8xf32>
  return %s : tensor<?x8xf32>
}

// -----

// An scf.if with one branch on the host is not on the device: the device
// branch's result is copied back for the host op behind the if, and the
// call reading the if reads the host's bytes (no device input).
// CHECK-LABEL: func.func private @forward
// CHECK: "rms_norm"(%arg0, %arg1) {device = "opencl", epsilon = 1.000000e-05 : f64} {moir.device_inputs = array<i64>, moir.host_results = array<i64: 0>, moir.keep_results}
// CHECK: "rms_norm"(%{{.*}}, %arg1) {device = "opencl", epsilon = 2.000000e-05 : f64} {moir.device_inputs = array<i64>, moir.host_results = array<i64: 0>, moir.keep_results}
func.func private @forward(%x: tensor<?x8xf32>, %w: tensor<8xf32>, %few: i1) -> tensor<?x8xf32> {
  %b = scf.if %few -> (tensor<?x8xf32>) {
    %d = moir.halide_call "moir_hl_rms_norm_1" "rms_norm"(%x, %w) {device = "opencl", epsilon = 1.0e-05 : f64} : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
    scf.yield %d : tensor<?x8xf32>
  } else {
    %h = arith.addf %x, %x : tensor<?x8xf32>
    scf.yield %h : tensor<?x8xf32>
  }
  %r = moir.halide_call "moir_hl_rms_norm_2" "rms_norm"(%b, %w) {device = "opencl", epsilon = 2.0e-05 : f64} : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}

// -----

// Host kernels only: nothing to keep, the module unchanged.
// CHECK-LABEL: func.func private @forward
// CHECK-NOT: moir.keep_results
// CHECK-NOT: moir_hl_release_activations
func.func private @forward(%x: tensor<?x8xf32>, %w: tensor<8xf32>) -> tensor<?x8xf32> {
  %r = moir.halide_call "moir_hl_rms_norm_1" "rms_norm"(%x, %w) {epsilon = 1.0e-05 : f64} : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}
