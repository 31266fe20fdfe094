// moir.halide_call's results bufferize to new allocations with the identity
// layout, and say so before they are bufferized (getBufferType): an scf.if
// that picks the decode or the prefill kernel yields them with that layout,
// not with unknown strides (which made the MLIR kernels downstream fall back
// to plain loops: DeepSeek's MLA absorption on packed kv_b in a Halide
// build, 527 us a layer; 64 with the identity layout).
// RUN: moir-opt %s --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s

// CHECK-LABEL: func.func @pick
// CHECK: scf.if %{{.*}} -> (memref<?x32xf32>)
// CHECK: func.call @moir_hl_linear_decode
// CHECK: scf.yield %{{.*}} : memref<?x32xf32>
// CHECK: func.call @moir_hl_linear_prefill
// CHECK: scf.yield %{{.*}} : memref<?x32xf32>
// CHECK-NOT: strided<[?, ?]
// CHECK: return
func.func @pick(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %decode: i1) -> tensor<?x32xf32> {
  %r = scf.if %decode -> tensor<?x32xf32> {
    %a = moir.halide_call "moir_hl_linear_decode" "linear"(%x, %w) {variant = "decode"} : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
    scf.yield %a : tensor<?x32xf32>
  } else {
    %b = moir.halide_call "moir_hl_linear_prefill" "linear"(%x, %w) {variant = "prefill"} : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
    scf.yield %b : tensor<?x32xf32>
  }
  return %r : tensor<?x32xf32>
}


// A device call's resident weight (%w) is handed to moir_hl_resident, which
// keeps it on the device (moir-halide-resident-weights defines it): its
// descriptor is the one the kernel gets. Where the table has no room (null),
// the call passes the weight's own descriptor, which Halide copies as any
// input. The call frees the device copies of the descriptors it made (the
// input's, the weight's own, which has one only in that case, and the
// result's), never the kept one.
// CHECK-LABEL: func.func @resident
// CHECK: %[[IFACE:.*]] = call @halide_opencl_device_interface()
// CHECK: %[[KEPT:.*]] = call @moir_hl_resident(%[[W:.*]], %[[IFACE]], %{{.*}}, %{{.*}}, %{{.*}}) : (!llvm.ptr, !llvm.ptr, i64, i64, i64) -> !llvm.ptr
// CHECK: %[[OK:.*]] = llvm.icmp "ne" %[[KEPT]], %{{.*}} : !llvm.ptr
// CHECK: %[[ARG:.*]] = llvm.select %[[OK]], %[[KEPT]], %[[W]] : i1, !llvm.ptr
// CHECK-NOT: cf.assert {{.*}}keeping
// CHECK: call @moir_hl_linear_dev(%[[X:.*]], %[[ARG]], %[[OUT:.*]]) :
// CHECK: call @halide_copy_to_host(%{{.*}}, %[[OUT]])
// CHECK-NOT: halide_device_free(%{{.*}}, %[[KEPT]])
// CHECK-NOT: halide_device_free(%{{.*}}, %[[ARG]])
// CHECK: call @halide_device_free(%{{.*}}, %[[X]])
// CHECK-NOT: halide_device_free(%{{.*}}, %[[KEPT]])
// CHECK-NOT: halide_device_free(%{{.*}}, %[[ARG]])
// CHECK: call @halide_device_free(%{{.*}}, %[[W]])
// CHECK-NOT: halide_device_free(%{{.*}}, %[[KEPT]])
// CHECK-NOT: halide_device_free(%{{.*}}, %[[ARG]])
// CHECK: call @halide_device_free(%{{.*}}, %[[OUT]])
// CHECK-NOT: halide_device_free
// CHECK: return
func.func @resident(%x: tensor<1x64xf32>, %w: tensor<32x64xf32>) -> tensor<1x32xf32> {
  %y = moir.halide_call "moir_hl_linear_dev" "linear"(%x, %w) {device = "opencl", variant = "decode"} {resident = array<i64: 1>} : (tensor<1x64xf32>, tensor<32x64xf32>) -> tensor<1x32xf32>
  return %y : tensor<1x32xf32>
}

// A resident operand read through a copy (its inner stride is not 1: a new
// buffer each call) is not kept: copied per call like any input.
// CHECK-LABEL: func.func @resident_copied
// CHECK-NOT: moir_hl_resident
// CHECK: call @moir_hl_linear_dev2
// CHECK: return
func.func @resident_copied(%x: tensor<1x32xf32>, %w: tensor<32x64xf32>) -> tensor<1x32xf32> {
  %s = tensor.extract_slice %w[0, 0] [32, 32] [1, 2] : tensor<32x64xf32> to tensor<32x32xf32>
  %y = moir.halide_call "moir_hl_linear_dev2" "linear"(%x, %s) {device = "opencl", variant = "decode"} {resident = array<i64: 1>} : (tensor<1x32xf32>, tensor<32x32xf32>) -> tensor<1x32xf32>
  return %y : tensor<1x32xf32>
}

// moir.halide_sync_rows: the cache's own buffer (no copy on the host), and
// moir_hl_sync_rows on its descriptor with the bytes of rows [offset, offset
// + rows) (a row of 2 x 64 f32 is 512 bytes) and the buffer's 65536; the
// attention kernel then reads the kept copy.
// CHECK-LABEL: func.func @sync_rows
// CHECK-SAME: (%[[Q:.*]]: memref<1x8x64xf32>, %[[K:.*]]: memref<128x2x64xf32>, %[[OFF:.*]]: index, %[[N:.*]]: index
// CHECK: %[[IFACE:.*]] = call @halide_opencl_device_interface()
// CHECK: %[[FIRST:.*]] = arith.index_cast %[[OFF]] : index to i64
// CHECK: %[[BEGIN:.*]] = arith.muli %[[FIRST]], %c512_i64 : i64
// CHECK: %[[END:.*]] = arith.muli %{{.*}}, %c512_i64{{.*}} : i64
// CHECK: %[[TOTAL:.*]] = llvm.mlir.constant(65536 : i64) : i64
// CHECK: %[[UNPADDED:.*]] = llvm.mlir.constant(0 : i64) : i64
// CHECK: %[[RC:.*]] = call @moir_hl_sync_rows(%{{.*}}, %[[IFACE]], %{{.*}}, %[[BEGIN]], %[[END]], %[[TOTAL]], %[[UNPADDED]]) : (!llvm.ptr, !llvm.ptr, i64, i64, i64, i64, i64) -> i32
// CHECK: cf.assert %{{.*}}, "moir.halide_sync_rows: copying a KV cache's rows to the device failed"
// CHECK: %[[KK:.*]] = call @moir_hl_resident(
// CHECK: %[[KA:.*]] = llvm.select %{{.*}}, %[[KK]], %{{.*}} : i1, !llvm.ptr
// CHECK: %[[VK:.*]] = call @moir_hl_resident(
// CHECK: %[[VA:.*]] = llvm.select %{{.*}}, %[[VK]], %{{.*}} : i1, !llvm.ptr
// CHECK: call @moir_hl_attention_dev(%{{.*}}, %[[KA]], %[[VA]],
// CHECK-NOT: memref.copy
// CHECK: return
func.func @sync_rows(%q: tensor<1x8x64xf32>, %k: tensor<128x2x64xf32>, %off: index, %n: index,
                     %p: tensor<1xi64>) -> tensor<1x8x64xf32> {
  %ks = moir.halide_sync_rows %k[%off, %n] on "opencl" : tensor<128x2x64xf32>
  %o = moir.halide_call "moir_hl_attention_dev" "attention"(%q, %ks, %ks, %p) {device = "opencl", scale = 0.125 : f64} {resident = array<i64: 1, 2>} : (tensor<1x8x64xf32>, tensor<128x2x64xf32>, tensor<128x2x64xf32>, tensor<1xi64>) -> tensor<1x8x64xf32>
  return %o : tensor<1x8x64xf32>
}

// On Vulkan: moir_hl_sync_rows with the padded size the kept copy was staged
// at (65536, a multiple of 64 already); the kernel's kept inputs come from
// moir_hl_resident_or_staged with a zeroed slot on the stack, which the call
// frees after the kernel (what the table had no room for was staged there).
// CHECK-LABEL: func.func @sync_rows_vulkan
// CHECK: %[[SLOT:.*]] = llvm.alloca %{{.*}} x !llvm.struct<(ptr, i64, struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>, struct<(i64, ptr, ptr, i64, i8, i8, i16, i32, ptr, ptr)>, array<4 x struct<(i32, i32, i32, i32)>>, array<4 x struct<(i32, i32, i32, i32)>>)>
// CHECK: %[[IFACE:.*]] = call @halide_vulkan_device_interface()
// CHECK: %[[TOTAL:.*]] = llvm.mlir.constant(65536 : i64) : i64
// CHECK: %[[PADDED:.*]] = llvm.mlir.constant(65536 : i64) : i64
// CHECK: call @moir_hl_sync_rows(%{{.*}}, %[[IFACE]], %{{.*}}, %{{.*}}, %{{.*}}, %[[TOTAL]], %[[PADDED]])
// CHECK: llvm.store %{{.*}}, %[[SLOT]]
// CHECK: %[[KEPT:.*]] = call @moir_hl_resident_or_staged(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[SLOT]])
// CHECK: cf.assert %{{.*}}, "Halide kernel moir_hl_attention_vk: copying a kept buffer to the device failed"
// CHECK: call @moir_hl_attention_vk(%{{.*}}, %[[KEPT]],
// CHECK: call @moir_hl_resident_free(%[[SLOT]])
// CHECK: return
func.func @sync_rows_vulkan(%q: tensor<1x8x64xf32>, %k: tensor<128x2x64xf32>, %off: index, %n: index,
                            %p: tensor<1xi64>) -> tensor<1x8x64xf32> {
  %ks = moir.halide_sync_rows %k[%off, %n] on "vulkan" : tensor<128x2x64xf32>
  %o = moir.halide_call "moir_hl_attention_vk" "attention"(%q, %ks, %ks, %p) {device = "vulkan", scale = 0.125 : f64} {resident = array<i64: 1, 2>} : (tensor<1x8x64xf32>, tensor<128x2x64xf32>, tensor<128x2x64xf32>, tensor<1xi64>) -> tensor<1x8x64xf32>
  return %o : tensor<1x8x64xf32>
}

// moirc --target=halide (moir-halide-keep-activations): an input on the
// device is bound to the kept buffer before the call and let go after it
// (OpenCL: moir_hl_bind may miss after the table overflowed, 0, and the call
// then copies the host's bytes; any other miss, -1, fails the call); each
// result is handed to the table, copied back first only where a host op
// reads it (the second result: copied = 1).
// CHECK-LABEL: func.func @kept
// CHECK: %[[B:.*]] = call @moir_hl_bind(%[[X:.*]], %{{.*}}) : (!llvm.ptr, i32) -> i32
// CHECK: %[[OK:.*]] = arith.cmpi sge, %[[B]], %{{.*}} : i32
// CHECK: cf.assert %[[OK]], "Halide kernel moir_hl_router_dev: input 0 is not on the device (or cropping it failed)"
// CHECK: call @moir_hl_router_dev(%[[X]], %{{.*}}, %[[O0:.*]], %[[O1:.*]]) :
// CHECK-NOT: halide_copy_to_host(%{{.*}}, %[[O0]])
// CHECK: llvm.mlir.constant(0 : i32)
// CHECK-NEXT: llvm.mlir.constant(0 : i32)
// CHECK-NEXT: call @moir_hl_keep(%[[O0]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, i32, i32) -> i32
// CHECK: call @halide_copy_to_host(%{{.*}}, %[[O1]])
// CHECK: llvm.mlir.constant(1 : i32)
// CHECK-NEXT: llvm.mlir.constant(0 : i32)
// CHECK-NEXT: call @moir_hl_keep(%[[O1]],
// CHECK: call @moir_hl_unbind(%[[X]], %{{.*}})
// CHECK: call @halide_device_free(%{{.*}}, %[[X]])
func.func @kept(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %y:2 = moir.halide_call "moir_hl_router_dev" "router"(%x, %w) {device = "opencl", top_k = 2 : i64} {moir.device_inputs = array<i64: 0>, moir.host_results = array<i64: 1>, moir.keep_results} : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return %y#0, %y#1 : tensor<?x2xf32>, tensor<?x2xi32>
}

// On Vulkan an input on the device must be bound (a crop of the kept
// buffer: asserted), is not staged, and its crop is released after the
// call; a result's padded buffer and its crop go to the table (staged = 1),
// which fails the call where it is full.
// CHECK-LABEL: func.func @kept_vulkan
// CHECK: %[[B:.*]] = call @moir_hl_bind(%[[X:.*]], %[[S:.*]]) : (!llvm.ptr, i32) -> i32
// CHECK: cf.assert %{{.*}}, "Halide kernel moir_hl_norm_vk: input 0 is not on the device (or cropping it failed)"
// CHECK: call @halide_malloc
// CHECK-NOT: call @halide_malloc
// CHECK: call @moir_hl_norm_vk(%[[X]],
// CHECK-NOT: halide_copy_to_host
// CHECK: call @moir_hl_keep(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, i32, i32) -> i32
// CHECK: cf.assert {{.*}}the table of activations kept there is full (256 buffers on one thread)
// CHECK: call @moir_hl_unbind(%[[X]], %{{.*}})
func.func @kept_vulkan(%x: tensor<?x64xf32>, %w: tensor<64xf32>) -> tensor<?x64xf32> {
  %y = moir.halide_call "moir_hl_norm_vk" "rms_norm"(%x, %w) {device = "vulkan", epsilon = 1.0e-05 : f64} {moir.device_inputs = array<i64: 0>, moir.host_results = array<i64>, moir.keep_results, resident = array<i64: 1>} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
