// RUN: moir-opt %s -split-input-file -moir-gpu-offload -verify-diagnostics | FileCheck %s

// Parallel loops stay (they become kernels); a loop that writes buffers and
// holds no dynamically sized allocation runs as one device thread, with its
// scratch buffer on that thread's stack and its nested parallel loop serial;
// a value the host branches on is read through the runtime.
// CHECK-LABEL: func.func private @moir_gpu_read_b32(index) -> i32
// CHECK-LABEL: func.func @f
// CHECK: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK-NOT: moir.serial
// CHECK: scf.reduce
// CHECK: scf.parallel (%{{.*}}) = (%c0{{.*}}) to (%c1{{.*}}) step (%c1{{.*}}) {
// CHECK-NEXT: memref.alloca() {alignment = 64 : i64} : memref<5xi32>
// CHECK: scf.for
// CHECK-NOT: scf.parallel
// CHECK: } {moir.serial}
// CHECK: memref.extract_aligned_pointer_as_index %{{.*}} : memref<5xi32> -> index
// CHECK: %[[V:.*]] = call @moir_gpu_read_b32(%{{.*}}) : (index) -> i32
// CHECK: arith.cmpi sgt, %[[V]]
// CHECK: scf.if
// CHECK: memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK: scf.parallel
func.func @f(%a: memref<?xf32>, %counts: memref<5xi32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c5 = arith.constant 5 : index
  %z = arith.constant 0 : i32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %a[%i] : memref<?xf32>
    %e = math.exp %v : f32
    memref.store %e, %a[%i] : memref<?xf32>
    scf.reduce
  }
  scf.for %t = %c0 to %n step %c1 {
    %scratch = memref.alloc() {alignment = 64 : i64} : memref<5xi32>
    scf.parallel (%j) = (%c0) to (%c5) step (%c1) {
      memref.store %z, %scratch[%j] : memref<5xi32>
      scf.reduce
    }
    %s = memref.load %scratch[%c0] : memref<5xi32>
    memref.store %s, %counts[%c1] : memref<5xi32>
    memref.dealloc %scratch : memref<5xi32>
  }
  %count = memref.load %counts[%c1] : memref<5xi32>
  %any = arith.cmpi sgt, %count, %z : i32
  scf.if %any {
    %m = arith.index_cast %count : i32 to index
    %buf = memref.alloc(%m) : memref<?xf32>
    scf.parallel (%i) = (%c0) to (%m) step (%c1) {
      %v = memref.load %a[%i] : memref<?xf32>
      memref.store %v, %buf[%i] : memref<?xf32>
      scf.reduce
    }
    memref.dealloc %buf : memref<?xf32>
  }
  return
}

// -----

// A host loop (it allocates per trip) that only reads a small buffer made
// before it copies the buffer to the host once, before the loop; its reads
// become host loads of the copy.
// CHECK-LABEL: func.func @experts
// CHECK: %[[COPY:.*]] = memref.alloca() {moir.host_copy} : memref<6xi32>
// CHECK: call @moir_gpu_read_block(%{{.*}}, %{{.*}}, %c24{{.*}}) : (index, index, index) -> ()
// CHECK: scf.for
// CHECK: memref.load %[[COPY]]
// CHECK-NOT: moir_gpu_read_b32
// CHECK: return
func.func @experts(%offsets: memref<6xi32>, %a: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c5 = arith.constant 5 : index
  scf.for %e = %c0 to %c5 step %c1 {
    %next = arith.addi %e, %c1 : index
    %lo = memref.load %offsets[%e] : memref<6xi32>
    %hi = memref.load %offsets[%next] : memref<6xi32>
    %n32 = arith.subi %hi, %lo : i32
    %n = arith.index_cast %n32 : i32 to index
    %buf = memref.alloc(%n) : memref<?xf32>
    scf.parallel (%i) = (%c0) to (%n) step (%c1) {
      %v = memref.load %a[%i] : memref<?xf32>
      memref.store %v, %buf[%i] : memref<?xf32>
      scf.reduce
    }
    memref.dealloc %buf : memref<?xf32>
  }
  return
}

// -----

// A parallel loop's fixed-size scratch (moe.route's per-token scores) goes on
// each work item's stack, at the start of its body: private to each thread;
// its deallocation goes. A dynamically sized one cannot.
// CHECK-LABEL: func.func @route
// CHECK: scf.parallel (%[[T:.*]]) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK-NEXT: %[[S:.*]] = memref.alloca() {alignment = 64 : i64} : memref<8xf32>
// CHECK-NOT: memref.alloc(
// CHECK-NOT: memref.dealloc
// CHECK: memref.store %{{.*}}, %[[S]]
// CHECK: scf.reduce
func.func @route(%logits: memref<?x8xf32>, %best: memref<?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.parallel (%t) = (%c0) to (%n) step (%c1) {
    %scores = memref.alloc() {alignment = 64 : i64} : memref<8xf32>
    scf.for %e = %c0 to %c8 step %c1 {
      %v = memref.load %logits[%t, %e] : memref<?x8xf32>
      %x = math.exp %v : f32
      memref.store %x, %scores[%e] : memref<8xf32>
    }
    %s = memref.load %scores[%c0] : memref<8xf32>
    memref.store %s, %best[%t] : memref<?xf32>
    memref.dealloc %scores : memref<8xf32>
    scf.reduce
  }
  return
}

// -----

func.func @dynamic_scratch(%a: memref<?xf32>, %n: index, %m: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.parallel (%t) = (%c0) to (%n) step (%c1) {
    // expected-error @+1 {{dynamically sized buffer inside a device loop}}
    %scratch = memref.alloc(%m) : memref<?xf32>
    %v = memref.load %a[%t] : memref<?xf32>
    memref.store %v, %scratch[%c0] : memref<?xf32>
    memref.dealloc %scratch : memref<?xf32>
    scf.reduce
  }
  return
}
