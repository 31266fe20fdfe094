// RUN: moir-opt %s -moir-cpu-contraction-kernels="vector-width=8 tile-m=2 tile-n=3 block-n=6" -split-input-file | FileCheck %s
// RUN: moir-opt %s -moir-cpu-contraction-kernels="bf16-dot=true" -split-input-file | FileCheck %s --check-prefix=DOT
// RUN: moir-opt %s -moir-cpu-contraction-kernels="vector-width=16" -split-input-file | FileCheck %s --check-prefix=F16V
// RUN: not moir-opt %s -moir-cpu-contraction-kernels="tile-n=4 block-n=6" -split-input-file 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true int8-decode=all" -split-input-file | FileCheck %s --check-prefix=INT8
// RUN: not moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true vector-width=2" -split-input-file 2>&1 | FileCheck %s --check-prefix=BAD8
// RUN: moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true" -split-input-file | FileCheck %s --check-prefix=NODEC
// RUN: moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true int8-decode=nibbles" -split-input-file | FileCheck %s --check-prefix=NIB
// RUN: not moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true int8-decode=yes" -split-input-file 2>&1 | FileCheck %s --check-prefix=BADDEC
// RUN: moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true int8-decode=all int8-decode-bits=16" -split-input-file | FileCheck %s --check-prefix=BITS16
// RUN: not moir-opt %s -moir-cpu-contraction-kernels="int8-dot=true int8-decode=all int8-decode-bits=12" -split-input-file 2>&1 | FileCheck %s --check-prefix=BADBITS
// BADBITS: int8-decode-bits must be 8 or 16, not 12
// RUN: moir-opt %s -moir-cpu-contraction-kernels="vector-width=8 tile-m=2 tile-n=3 block-n=6 prefetch-bytes=192" -split-input-file | FileCheck %s --check-prefix=PF
// RUN: moir-opt %s -moir-cpu-contraction-kernels="bf16-dot=true amx=true" -split-input-file | FileCheck %s --check-prefix=AMX
// RUN: not moir-opt %s -moir-cpu-contraction-kernels="amx=true" -split-input-file 2>&1 | FileCheck %s --check-prefix=BADAMX
// BADAMX: amx needs bf16-dot or int8-dot and a vector width of 16 f32 lanes
// BADDEC: int8-decode must be none, nibbles or all, not 'yes'

// C[m, n] += A[m, k] * W[n, k] with bf16 weights: blocks of 6 weight rows run
// in parallel (fewer where that makes under 4 work items: rows / 4 in whole
// tiles of 3, ceil(rows / 12) * 3); 2x3 register tiles keep 6 accumulators
// of 8 lanes through the k loop (2 activation and 3 weight loads, 6 FMAs per
// step), then 1-wide edge tiles for the rows and columns left over; lanes
// summed once; the k remainder is scalar.
// CHECK-LABEL: func.func @bf16_weights
// CHECK-NOT: linalg.generic
// CHECK: %[[COLS:.*]] = memref.dim %arg1, %{{.*}} : memref<30x100xbf16>
// CHECK: %[[SHARE:.*]] = arith.ceildivui %[[COLS]], %c12
// CHECK: %[[EVEN:.*]] = arith.muli %[[SHARE]], %c3
// CHECK: %[[BLOCK:.*]] = arith.minui %c6, %[[EVEN]]
// CHECK: %[[ITEMS:.*]] = arith.ceildivui %[[COLS]], %[[BLOCK]]
// CHECK: scf.parallel (%{{.*}}) = (%{{.*}}) to (%[[ITEMS]])
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK-NOT: memref.prefetch
// CHECK-COUNT-2: vector.load %arg0{{.*}} : memref<?x100xf32>, vector<8xf32>
// CHECK-COUNT-3: vector.load %arg1{{.*}} : memref<30x100xbf16>, vector<8xbf16>
// CHECK-COUNT-6: vector.fma {{.*}} : vector<8xf32>
// CHECK: scf.yield
// CHECK-COUNT-6: vector.reduction <add>, {{.*}} fastmath<reassoc,contract> : vector<8xf32> into f32
// CHECK: scf.for
// CHECK: memref.load %arg0
// CHECK: vector.from_elements {{.*}} : vector<3xf32>
// CHECK: vector.load %arg2{{.*}} : memref<?x30xf32>, vector<3xf32>
// CHECK: vector.store {{.*}}, %arg2
// CHECK: scf.for
// Edge: 2 rows x 1 column.
// CHECK: iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>)
// CHECK: scf.for
// Edge: 1 row x 3 columns, then 1 x 1. A tile of one activation row
// (decode) prefetches each step its share of the next tile's rows in
// address order: 3 rows x 8 bf16 = 48 bytes, one line, clamped to the
// buffer's last byte and split into (row, element).
// CHECK: iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK: %[[AT:.*]] = arith.minui %{{.*}}, %{{.*}} : index
// CHECK: %[[ROW:.*]] = arith.divui %[[AT]], %c200{{.*}} : index
// CHECK: memref.prefetch %arg1[%[[ROW]], %{{.*}}], read, locality<2>, data : memref<30x100xbf16>
// CHECK-NOT: memref.prefetch
// CHECK: iter_args({{[^)]*}}) -> (vector<8xf32>)
// CHECK: scf.reduce

// With bf16-dot, from 16 activation rows on (the depth, 100, is even), the
// broadcast kernel: the activations rounded to bf16 once, rows interleaved in
// groups of 16 and paired along k (i32 words: pair p of row 16g + l at
// (g * 50 + p) * 16 + l), rows past the last zeroed; tiles of 2 groups x 8
// weight rows, each step one vector of pairs per group and each weight row's
// pair broadcast to every lane; each group's 8 column accumulators transposed
// to its rows by 24 shuffles, added to C a row at a time (checked where the
// group is not all this product's).
// DOT-LABEL: func.func @bf16_weights
// DOT: %[[MANY:.*]] = arith.cmpi uge, %{{.*}}, %c16
// DOT: scf.if %[[MANY]] {
// DOT: %[[PAIRS:.*]] = memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi32>
// DOT: arith.truncf {{.*}} : vector<16xf32> to vector<16xbf16>
// DOT: vector.bitcast {{.*}} : vector<16xbf16> to vector<8xi32>
// DOT: memref.store %c0_i32, %[[PAIRS]]
// A first or last group holding fewer than half a group (8) of the product's
// rows: those rows take the lane-sum kernel on their own rows and outputs, in
// a loop over the two ends (here the first group is whole; 37 rows would end
// with 5 of a group).
// DOT: arith.cmpi ult, %{{.*}}, %c8
// DOT: scf.for %{{.*}} = %c0{{.*}} to %c2
// DOT: memref.subview %arg0[{{.*}}] : memref<?x100xf32> to memref<?x100xf32, strided<[100, 1], offset: ?>>
// DOT: memref.subview %arg2[{{.*}}] : memref<?x30xf32> to memref<?x30xf32, strided<[30, 1], offset: ?>>
// DOT: x86vector.avx512.dot {{.*}} : vector<32xbf16> -> vector<16xf32>
// The other rows, whole groups between them, take the broadcast kernel.
// DOT: memref.subview %arg2[{{.*}}] : memref<?x30xf32> to memref<?x30xf32, strided<[30, 1], offset: ?>>
// DOT: scf.parallel
// DOT: iter_args({{[^)]*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// DOT-COUNT-2: vector.load %[[PAIRS]]{{.*}} : memref<?xi32>, vector<16xi32>
// DOT: vector.load %arg1{{.*}} : memref<30x100xbf16>, vector<2xbf16>
// DOT: vector.broadcast {{.*}} : i32 to vector<16xi32>
// DOT-COUNT-16: x86vector.avx512.dot {{.*}} : vector<32xbf16> -> vector<16xf32>
// DOT: scf.yield
// DOT-COUNT-24: vector.shuffle {{.*}} : vector<16xf32>, vector<16xf32>
// DOT: vector.shuffle {{.*}} [0, 1, 2, 3, 4, 5, 6, 7] : vector<16xf32>, vector<16xf32>
// DOT: scf.if
// DOT: vector.store {{.*}}, %subview{{.*}} : memref<?x30xf32, strided<[30, 1], offset: ?>>, vector<8xf32>
// DOT: memref.dealloc %[[PAIRS]]
// DOT: } else {
// Fewer rows (decode): the lane-sum kernel. The activations are rounded to
// bf16 once (a scratch copy) and each step is a vdpbf16ps over 32 bf16 pairs
// per accumulator.
// DOT: %[[SCRATCH:.*]] = memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?x?xbf16>
// DOT: arith.truncf {{.*}} : vector<16xf32> to vector<16xbf16>
// DOT: scf.parallel
// DOT: vector.load %[[SCRATCH]]{{.*}} : memref<?x?xbf16>, vector<32xbf16>
// DOT: x86vector.avx512.dot {{.*}} : vector<32xbf16> -> vector<16xf32>
// A 4x4 tile's 16 accumulators are summed together: pairs fold by two-source
// shuffles (8 + 4 + 2 + 1 adds), the last vector holds one sum per lane; each
// row's 4 sums are one vector added to C. The depth, 100, is not whole steps
// of 32: the remainder is scalar, added to the row vectors.
// DOT-NOT: vector.reduction
// DOT-COUNT-15: arith.addf {{.*}} : vector<16xf32>
// DOT-NOT: vector.reduction
// DOT: vector.shuffle {{.*}} [0, 8, 4, 12] : vector<16xf32>, vector<16xf32>
// DOT: scf.for
// DOT: vector.from_elements {{.*}} : vector<4xf32>
// DOT: vector.store {{.*}}, %arg2{{.*}} : memref<?x30xf32>, vector<4xf32>
// DOT: memref.dealloc %[[SCRATCH]]
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @bf16_weights(%x: memref<?x100xf32>, %w: memref<30x100xbf16>, %y: memref<?x30xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x100xf32>, memref<30x100xbf16>) outs(%y : memref<?x30xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %e = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %e fastmath<reassoc,contract> : f32
    %s = arith.addf %p, %c fastmath<reassoc,contract> : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Left alone: an unmarked contraction and one whose body is not a
// multiply-accumulate. The one with weights stored input-major (W[k, n]) gets
// the outer-product kernel (no batch: blocks of rows x columns in parallel),
// each step prefetching row k's lines of the next block of columns (two
// lines of 4 vectors of 8 f32), or in the last block its own 16 rows on.
// CHECK-LABEL: func.func @not_matched
// CHECK-NOT: vector.
// CHECK: linalg.generic
// CHECK-NOT: linalg.generic
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) = (%c0{{.*}}, %c0{{.*}}) to
// CHECK: %[[HASNEXT:.*]] = arith.cmpi ult
// CHECK-NEXT: %[[ROW:.*]] = arith.select %[[HASNEXT]], %{{.*}}, %{{.*}} : index
// CHECK-COUNT-2: memref.prefetch %arg2[%[[ROW]], %{{.*}}], read, locality<2>, data : memref<64x32xf32>
// CHECK: vector.broadcast
// CHECK-COUNT-4: vector.fma
// CHECK: linalg.generic
// CHECK-NOT: linalg.generic
// DOT-LABEL: func.func @not_matched
// DOT-NOT: x86vector
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @not_matched(%x: memref<?x64xf32>, %w: memref<32x64xf32>, %wt: memref<64x32xf32>, %y: memref<?x32xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<32x64xf32>) outs(%y : memref<?x32xf32>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %p, %c : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#mk, #kn, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %wt : memref<?x64xf32>, memref<64x32xf32>) outs(%y : memref<?x32xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %p, %c : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<32x64xf32>) outs(%y : memref<?x32xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.maximumf %p, %c : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Batched: attention scores per head, S[t, h, s] += Q[t, h, d] * K[s, h / 2, d],
// become a parallel loop over heads (the work items) around the kernel on
// 2-D views (Q[:, h, :], K[:, h / 2, :], S[:, h, :]), whose blocks then run
// sequentially.
// CHECK-LABEL: func.func @scores
// CHECK: scf.parallel (%[[H:.*]]) = (%c0{{.*}}) to (%c4)
// CHECK: memref.subview %arg0[0, %[[H]], 0] [%{{.*}}, 1, 64] [1, 1, 1] : memref<?x4x64xf32> to memref<?x64xf32, strided<[256, 1], offset: ?>>
// CHECK: %[[KH:.*]] = affine.apply #{{.*}}(%[[H]])
// CHECK: memref.subview %arg1[0, %[[KH]], 0] [%{{.*}}, 1, 64] [1, 1, 1] : memref<?x2x64xf32> to memref<?x64xf32, strided<[128, 1], offset: ?>>
// CHECK: memref.subview %arg2[0, %[[H]], 0]
// CHECK-NOT: scf.parallel
// CHECK: scf.for
// CHECK: vector.fma
#q = affine_map<(t, h, s, d) -> (t, h, d)>
#k = affine_map<(t, h, s, d) -> (s, h floordiv 2, d)>
#o = affine_map<(t, h, s, d) -> (t, h, s)>
func.func @scores(%q: memref<?x4x64xf32>, %k: memref<?x2x64xf32>, %o: memref<?x4x?xf32>) {
  linalg.generic {indexing_maps = [#q, #k, #o], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : memref<?x4x64xf32>, memref<?x2x64xf32>) outs(%o : memref<?x4x?xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b fastmath<reassoc,contract> : f32
    %s = arith.addf %p, %c fastmath<reassoc,contract> : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Outer-product form: attention's weighted sums of value rows per head,
// O[t, h, d] += P[t, h, s] * V[s, h / 2, d] (V and O contiguous along d):
// heads in parallel, then blocks of (4 * tile-m rows) x (4 vectors of
// columns); each k step broadcasts tile-m probabilities and loads 4 value
// vectors (4 * tile-m FMAs, no lane sums); a partial column tile is summed
// one column at a time.
// CHECK-LABEL: func.func @weighted_sum
// CHECK: scf.parallel (%[[H:.*]]) = (%c0{{.*}}) to (%c4)
// CHECK: memref.subview %arg1[0, %{{.*}}, 0] [%{{.*}}, 1, 40] [1, 1, 1] : memref<?x2x40xf32> to memref<?x40xf32, strided<[80, 1], offset: ?>>
// CHECK-NOT: scf.parallel
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.if
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK-COUNT-4: vector.load %{{.*}} : memref<?x40xf32, strided<[80, 1], offset: ?>>, vector<8xf32>
// CHECK: vector.broadcast
// CHECK-COUNT-4: vector.fma
// CHECK: vector.broadcast
// CHECK-COUNT-4: vector.fma
// CHECK: scf.yield
// CHECK: vector.store
// CHECK: } else {
// CHECK: memref.load
// CHECK-NOT: vector.fma
// CHECK: memref.store
#p = affine_map<(t, h, s, d) -> (t, h, s)>
#v = affine_map<(t, h, s, d) -> (s, h floordiv 2, d)>
#o = affine_map<(t, h, s, d) -> (t, h, d)>
func.func @weighted_sum(%p: memref<?x4x?xf32>, %v: memref<?x2x40xf32>, %o: memref<?x4x40xf32>) {
  linalg.generic {indexing_maps = [#p, #v, #o], iterator_types = ["parallel", "parallel", "reduction", "parallel"]}
      ins(%p, %v : memref<?x4x?xf32>, memref<?x2x40xf32>) outs(%o : memref<?x4x40xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %m = arith.mulf %a, %b fastmath<reassoc,contract> : f32
    %s = arith.addf %m, %c fastmath<reassoc,contract> : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Left alone: a batch loop that does not index the output directly (two heads
// would add into the same slice: not a set of independent work items).
// CHECK-LABEL: func.func @shared_output
// CHECK-NOT: vector.
// CHECK: linalg.generic
#q2 = affine_map<(t, h, s, d) -> (t, h, d)>
#k2 = affine_map<(t, h, s, d) -> (s, h, d)>
#o2 = affine_map<(t, h, s, d) -> (t, h floordiv 2, s)>
func.func @shared_output(%q: memref<?x4x64xf32>, %k: memref<?x4x64xf32>, %o: memref<?x2x?xf32>) {
  linalg.generic {indexing_maps = [#q2, #k2, #o2], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%q, %k : memref<?x4x64xf32>, memref<?x4x64xf32>) outs(%o : memref<?x2x?xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %p, %c : f32
    linalg.yield %s : f32
  }
  return
}

// BAD: block-n a multiple of tile-n

// -----

// A quantized KV cache as the weight operand (int8 storage, converted in the
// body; its row scales are applied by the lowering outside the product): the
// same kernel, each loaded i8 vector converted to f32 lanes before the FMAs
// (no bf16 dot products).
// CHECK-LABEL: func.func @int8_rows
// CHECK: scf.parallel
// CHECK: vector.load %{{.*}} : memref<32x64xi8>, vector<8xi8>
// CHECK: arith.sitofp %{{.*}} : vector<8xi8> to vector<8xf32>
// CHECK: vector.fma
// DOT-LABEL: func.func @int8_rows
// DOT-NOT: x86vector
#mk8 = affine_map<(m, n, k) -> (m, k)>
#nk8 = affine_map<(m, n, k) -> (n, k)>
#mn8 = affine_map<(m, n, k) -> (m, n)>
func.func @int8_rows(%x: memref<?x64xf32>, %w: memref<32x64xi8>, %y: memref<?x32xf32>) {
  linalg.generic {indexing_maps = [#mk8, #nk8, #mn8], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<32x64xi8>) outs(%y : memref<?x32xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: i8, %c: f32):
    %bf = arith.sitofp %b : i8 to f32
    %p = arith.mulf %a, %bf fastmath<reassoc,contract> : f32
    %s = arith.addf %p, %c fastmath<reassoc,contract> : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// A packed 4-bit weight (moir.packed = "u4:32"): the codes are loaded as
// bytes (8 at a time), the nibble of the half selected by a shift, widened.
// Each group first prefetches the next tile's codes and scales (rows + 3,
// clamped to the last row 29) at this group. Tiles of 2 activation rows
// (prefill) dequantize each weight vector in registers (scale * code + offset,
// one FMA) and multiply it into the 2x3 accumulators; tiles of one row
// (decode, and the rows past the last full tile) keep per-group products and
// the activations' group sums and scale them once per group: acc += scale *
// products, acc += offset * sums.
// With int8-dot (16 lanes): from 8 activation rows on, the activations are
// quantized (per row and block of 32: max|x|, round-to-even of x * 127 /
// max|x|, four codes per i32 word written to their row's lane of its group of
// 16 rows) in a parallel loop over rows, then per work item tiles of 2 row
// groups x 4 weight rows: each block of 32 columns is 8 steps of vpdpbusd on
// the nibbles (masked, shifted) broadcast to every lane with each lane's row
// of codes, then per output float(dot) * (activation scale * weight scale)
// + activation sum * weight offset; the outputs go back to C with a masked
// gather and scatter along its rows. Fewer rows (decode), where the depth is
// whole 32s, take the row kernel: steps of 64 codes (two groups: their 32
// bytes' low nibbles, then the high ones, one vpdpbusd), each activation row
// quantized in that order with its block's scale and sum share beside every
// 4-code lane, then per step and output float(dot) * (lane scales * weight
// scales) + lane sums * weight offsets, the lanes added once per output, and
// where the depth is an odd number of 32s, a last step of one group at 8
// lanes; other depths, and every depth without int8-decode (its default),
// keep the f32 kernel.
// INT8-LABEL: func.func @packed_u4
// INT8: %[[ENOUGH:.*]] = arith.cmpi uge, %{{.*}}, %c8
// INT8: scf.if %[[ENOUGH]] {
// INT8: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi32>
// INT8: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xf32>
// INT8: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi32>
// INT8: scf.parallel
// INT8: vector.reduction <maxnumf>
// INT8: math.roundeven {{.*}} : vector<16xf32>
// INT8: arith.fptosi {{.*}} : vector<16xf32> to vector<16xi32>
// INT8: vector.bitcast {{.*}} : vector<16xi8> to vector<4xi32>
// INT8: scf.parallel
// INT8: scf.for {{.*}} -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// INT8: vector.load %arg1{{.*}} : memref<30x32xi8>, vector<4xi8>
// INT8: vector.broadcast {{.*}} : i32 to vector<16xi32>
// INT8: arith.andi
// INT8-COUNT-2: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// INT8: arith.shrui
// INT8: arith.andi
// INT8-COUNT-2: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// INT8: memref.load %arg2
// INT8: arith.sitofp {{.*}} : vector<16xi32> to vector<16xf32>
// INT8: vector.fma
// INT8: vector.fma
// INT8: vector.gather %arg3
// INT8: vector.scatter %arg3
// INT8: memref.dealloc
// INT8: } else {
// INT8: %[[REM:.*]] = arith.remui %{{.*}}, %c32
// INT8: %[[WHOLE:.*]] = arith.cmpi eq, %[[REM]]
// INT8: scf.if %[[WHOLE]] {
// INT8: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi8>
// INT8-COUNT-2: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xf32>
// INT8: math.roundeven {{.*}} : vector<16xf32>
// INT8: vector.store {{.*}} : memref<?xi8>, vector<16xi8>
// INT8: vector.store {{.*}} : memref<?xf32>, vector<4xf32>
// INT8: scf.parallel
// INT8: scf.for {{.*}} -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// INT8-COUNT-2: vector.load {{.*}} : memref<?xi8>, vector<64xi8>
// INT8: vector.load %arg1{{.*}} : memref<30x32xi8>, vector<32xi8>
// INT8: arith.andi {{.*}} : vector<32xi8>
// INT8: arith.shrui {{.*}} : vector<32xi8>
// INT8: vector.shuffle {{.*}} : vector<32xi8>, vector<32xi8>
// INT8: memref.load %arg2
// INT8: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// INT8: arith.sitofp {{.*}} : vector<16xi32> to vector<16xf32>
// INT8: vector.fma
// INT8: vector.fma
// INT8: vector.reduction <add>
// INT8: %[[ODD:.*]] = arith.cmpi ne
// INT8: scf.if %[[ODD]] -> (f32, f32
// INT8: vector.load %arg1{{.*}} : memref<30x32xi8>, vector<16xi8>
// INT8: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"
// INT8: memref.dealloc
// INT8: } else {
// INT8: scf.parallel
// INT8: arith.uitofp {{.*}} : vector<16xi8> to vector<16xf32>
// int8-decode=nibbles (moirc's default): the 4-bit codes take the row
// kernel in decode (their unpacking bounds it), the 8-bit ones below keep
// the f32 kernel (memory bounds theirs).
// NIB-LABEL: func.func @packed_u4
// NIB: } else {
// NIB: math.roundeven
// NIB: vpdpbusd
// NODEC-LABEL: func.func @packed_u4
// NODEC: } else {
// NODEC-NOT: vector<64xi8>
// NODEC: arith.uitofp {{.*}} : vector<16xi8> to vector<16xf32>
// BAD8: int8-dot needs a vector width of 4, 8 or 16
// CHECK-LABEL: func.func @packed_u4
// CHECK-NOT: linalg.generic
// CHECK: scf.parallel
// The next tile's rows' scales (16 bytes a row, one line each) are
// prefetched once, before the group loop; each group step prefetches its
// share of the codes about 4 KB on, at most 8 tiles (the tile's 3 rows of
// 32 bytes: 8 tiles, 24 rows, on; 48 bytes a step, one line), in address
// order, the offset clamped to the buffer's last byte before it is split
// into (row, byte).
// CHECK-COUNT-3: memref.prefetch %arg2[{{.*}}], read, locality<2>, data : memref<30x2x2xf32>
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK: %[[FIRST:.*]] = arith.addi %{{.*}}, %c24{{.*}} : index
// CHECK-NEXT: %{{.*}} = arith.constant 32 : index
// CHECK-NEXT: %[[SPAN:.*]] = arith.muli %[[FIRST]], %{{.*}} : index
// CHECK: %[[AT:.*]] = arith.minui
// CHECK-NEXT: arith.constant 32
// CHECK-NEXT: arith.divui %[[AT]]
// CHECK: memref.prefetch %arg1[%{{.*}}, %{{.*}}], read, locality<2>, data : memref<30x32xi8>
// CHECK-NOT: memref.prefetch
// CHECK-COUNT-6: memref.load %arg2[{{.*}}] : memref<30x2x2xf32>
// With prefetch-bytes=192 (--cpu-prefetch-distance) the codes are prefetched
// 2 tiles (6 rows) on instead.
// PF-LABEL: func.func @packed_u4
// PF: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// PF: %[[FIRST:.*]] = arith.addi %{{.*}}, %c6{{.*}} : index
// PF-NEXT: %{{.*}} = arith.constant 32 : index
// PF-NEXT: %{{.*}} = arith.muli %[[FIRST]], %{{.*}} : index
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// CHECK-COUNT-2: vector.load %arg0{{.*}} : memref<?x64xf32>, vector<8xf32>
// CHECK: vector.load %arg1{{.*}} : memref<30x32xi8>, vector<8xi8>
// CHECK: arith.shrui {{.*}} : vector<8xi8>
// CHECK: arith.andi {{.*}} : vector<8xi8>
// CHECK: %[[CODE:.*]] = arith.uitofp {{.*}} : vector<8xi8> to vector<8xf32>
// CHECK: %[[W:.*]] = vector.fma %{{.*}}, %[[CODE]], %{{.*}} : vector<8xf32>
// CHECK-COUNT-2: vector.fma
// CHECK-COUNT-6: vector.fma {{.*}} : vector<8xf32>
// CHECK: vector.reduction <add>
// The one-row tiles (1 x 3): per group, 3 products and the activations' sum
// (4 vectors), then 3 scales and 3 offsets applied.
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK: vector.load %arg0{{.*}} : memref<?x64xf32>, vector<8xf32>
// CHECK: vector.load %arg1{{.*}} : memref<30x32xi8>, vector<8xi8>
// CHECK: arith.uitofp {{.*}} : vector<8xi8> to vector<8xf32>
// CHECK-COUNT-3: vector.fma {{.*}} : vector<8xf32>
// CHECK: arith.addf {{.*}} : vector<8xf32>
// CHECK-COUNT-6: memref.load %arg2[{{.*}}] : memref<30x2x2xf32>
// CHECK-COUNT-6: vector.fma {{.*}} : vector<8xf32>
// CHECK: vector.reduction <add>
#a = affine_map<(m, n, k) -> (m, k)>
#code = affine_map<(m, n, k) -> (n, (k floordiv 32) * 16 + k mod 16)>
#scale = affine_map<(m, n, k) -> (n, k floordiv 32, 0)>
#offset = affine_map<(m, n, k) -> (n, k floordiv 32, 1)>
#c = affine_map<(m, n, k) -> (m, n)>
func.func @packed_u4(%x: memref<?x64xf32>, %d: memref<30x32xi8>, %s: memref<30x2x2xf32>, %y: memref<?x30xf32>) {
  linalg.generic {indexing_maps = [#a, #code, #scale, #offset, #c],
                  iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %d, %s, %s : memref<?x64xf32>, memref<30x32xi8>, memref<30x2x2xf32>, memref<30x2x2xf32>)
      outs(%y : memref<?x30xf32>) attrs = {moir.packed = "u4:32", moir.parallel} {
  ^bb0(%in: f32, %code: i8, %sc: f32, %off: f32, %acc: f32):
    %k = linalg.index 2 : index
    %c32 = arith.constant 32 : index
    %c16 = arith.constant 16 : index
    %r = arith.remui %k, %c32 : index
    %hi = arith.cmpi uge, %r, %c16 : index
    %c4 = arith.constant 4 : i8
    %c0 = arith.constant 0 : i8
    %sh = arith.select %hi, %c4, %c0 : i8
    %c15 = arith.constant 15 : i8
    %v0 = arith.shrui %code, %sh : i8
    %v1 = arith.andi %v0, %c15 : i8
    %v = arith.uitofp %v1 : i8 to f32
    %w0 = arith.mulf %sc, %v : f32
    %w = arith.addf %w0, %off : f32
    %p = arith.mulf %in, %w : f32
    %sum = arith.addf %acc, %p : f32
    linalg.yield %sum : f32
  }
  return
}

// -----

// A symmetric packed int8 weight with f16 scales (Q8_0: moir.packed
// "i8:32", scales [rows, groups, 1] x f16, no offsets): each group's scale
// is loaded as f16 and extended (at 16 lanes, the F16V prefix: broadcast, then
// extended as a vector, vpbroadcastw and vcvtph2ps, not a scalar widening
// and a broadcast); the one-row tiles keep 3 products per group
// and no activation sums (4 -> 3 accumulators), and scale them with one FMA
// per output; the 2-row tiles dequantize with a multiply (no offset FMA).
// With int8-dot the block's products are scaled with one FMA (no offset
// term).
// CHECK-LABEL: func.func @packed_i8_sym_f16
// F16V-LABEL: func.func @packed_i8_sym_f16
// F16V: memref.load %arg2[{{.*}}] : memref<30x2x1xf16>
// F16V-NEXT: vector.broadcast {{.*}} : f16 to vector<16xf16>
// F16V-NEXT: arith.extf {{.*}} : vector<16xf16> to vector<16xf32>
// F16V-NOT: arith.extf {{.*}} : f16 to f32
// F16V: return
// CHECK-NOT: linalg.generic
// CHECK: memref.prefetch %arg2[{{.*}}], read, locality<2>, data : memref<30x2x1xf16>
// CHECK: memref.load %arg2[{{.*}}] : memref<30x2x1xf16>
// CHECK: arith.extf {{.*}} : f16 to f32
// CHECK: arith.sitofp {{.*}} : vector<8xi8> to vector<8xf32>
// CHECK: arith.mulf {{.*}} : vector<8xf32>
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK: arith.sitofp {{.*}} : vector<8xi8> to vector<8xf32>
// CHECK-COUNT-3: vector.fma {{.*}} : vector<8xf32>
// CHECK-NEXT: scf.yield
// CHECK-COUNT-3: arith.extf {{.*}} : f16 to f32
// CHECK-NOT: memref.load %arg2
// CHECK-COUNT-3: vector.fma {{.*}} : vector<8xf32>
// CHECK-NEXT: scf.yield
// NIB-LABEL: func.func @packed_i8_sym_f16
// NIB: } else {
// NIB-NOT: vpdpbusd
// NIB: arith.sitofp {{.*}} : vector<16xi8> to vector<16xf32>
// NIB-NOT: vpdpbusd
// NIB: return
// INT8-LABEL: func.func @packed_i8_sym_f16
// INT8: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// INT8: memref.load %arg2{{.*}} : memref<30x2x1xf16>
// INT8: arith.extf
// INT8: arith.sitofp {{.*}} : vector<16xi32> to vector<16xf32>
// INT8-NEXT: vector.fma
// INT8-NEXT: arith.mulf
// INT8-NEXT: arith.sitofp {{.*}} : vector<16xi32> to vector<16xf32>
// INT8-NEXT: vector.fma
// INT8-NEXT: arith.mulf
// int8-decode-bits=16: the decode rows' codes come with residual codes in
// their own buffer, round(128 * (y - round(y))), y the element in steps;
// the corrections take the residuals' sums too. Per step and weight row,
// the codes' dot product (from the corrections) shifted left by 7
// accumulates the residuals' (same weight bytes), then one conversion and
// FMA as with 8 bits.
// BITS16-LABEL: func.func @packed_i8_sym_f16
// BITS16: } else {
// BITS16: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi8>
// BITS16: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xf32>
// BITS16: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi32>
// BITS16: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi8>
// BITS16: %[[Y:.*]] = arith.mulf
// BITS16-NEXT: %[[CODE:.*]] = math.roundeven %[[Y]] : vector<16xf32>
// BITS16: %[[REST:.*]] = arith.subf %[[Y]], %[[CODE]] : vector<16xf32>
// BITS16-NEXT: arith.constant dense<1.280000e+02> : vector<16xf32>
// BITS16-NEXT: arith.mulf %[[REST]]
// BITS16-NEXT: math.roundeven
// BITS16: %[[BIASED:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"
// BITS16-NEXT: %[[RESIDUALS:.*]] = vector.load {{.*}} : memref<?xi8>, vector<32xi8>
// BITS16: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"(%[[BIASED]], %{{.*}}, %[[RESIDUALS]])
// BITS16: scf.parallel
// BITS16: %[[ACTS:.*]] = vector.load %[[CODES:.*]][%[[AT:.*]]] : memref<?xi8>, vector<64xi8>
// BITS16: %[[RESTS:.*]] = vector.load %{{.*}}[%[[AT]]] : memref<?xi8>, vector<64xi8>
// BITS16: %[[W:.*]] = arith.xori
// BITS16: %[[PRODUCT:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.*}}, %[[W]], %[[ACTS]])
// BITS16-NEXT: %[[SHIFTED:.*]] = arith.shli %[[PRODUCT]]
// BITS16-NEXT: %[[BOTH:.*]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%[[SHIFTED]], %[[W]], %[[RESTS]])
// BITS16-NEXT: arith.sitofp %[[BOTH]] : vector<16xi32> to vector<16xf32>
// BITS16: vector.fma
#a2 = affine_map<(m, n, k) -> (m, k)>
#code2 = affine_map<(m, n, k) -> (n, k)>
#scale2 = affine_map<(m, n, k) -> (n, k floordiv 32, 0)>
#c2 = affine_map<(m, n, k) -> (m, n)>
func.func @packed_i8_sym_f16(%x: memref<?x64xf32>, %d: memref<30x64xi8>, %s: memref<30x2x1xf16>, %y: memref<?x30xf32>) {
  linalg.generic {indexing_maps = [#a2, #code2, #scale2, #c2],
                  iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %d, %s : memref<?x64xf32>, memref<30x64xi8>, memref<30x2x1xf16>)
      outs(%y : memref<?x30xf32>) attrs = {moir.packed = "i8:32", moir.parallel} {
  ^bb0(%in: f32, %code: i8, %sc: f16, %acc: f32):
    %v = arith.sitofp %code : i8 to f32
    %s32 = arith.extf %sc : f16 to f32
    %w = arith.mulf %s32, %v : f32
    %p = arith.mulf %in, %w : f32
    %sum = arith.addf %acc, %p : f32
    linalg.yield %sum : f32
  }
  return
}

// -----

// A packed weight's rows combined (the codes indexed (k, n): C[m, n] +=
// A[m, k] * W[k, n], absorbed MLA's query absorption over a Q8_0 kv_b_proj):
// tiles of tile-m rows x 4 vectors of columns, each k step dequantizing
// weight row k's 4 vectors in registers (scale broadcast, times the codes)
// for tile-m x 4 FMAs, and prefetching row k's line of the next block of
// columns (in the last block, the tile's own 16 rows on); one-row tiles
// after, where each group's scale multiplies the broadcast activation
// instead of the codes. It takes no int8 path.
// CHECK-LABEL: func.func @packed_rows_i8
// CHECK-NOT: linalg.generic
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK: %[[AHEAD:.*]] = arith.minui
// CHECK: %[[HASNEXT:.*]] = arith.cmpi ult
// CHECK: %[[ROW:.*]] = arith.select %[[HASNEXT]], %{{.*}}, %[[AHEAD]] : index
// CHECK: memref.prefetch %arg1[%[[ROW]], %{{.*}}], read, locality<2>, data : memref<24x64xi8>
// CHECK: memref.prefetch %arg2[%[[ROW]], %{{.*}}, %{{.*}}], read, locality<2>, data : memref<24x2x1xf16>
// CHECK-COUNT-4: arith.sitofp {{.*}} : vector<8xi8> to vector<8xf32>
// CHECK: memref.load %arg0
// CHECK-COUNT-4: vector.fma {{.*}} : vector<8xf32>
// CHECK: memref.load %arg0
// CHECK-COUNT-4: vector.fma {{.*}} : vector<8xf32>
// CHECK-NEXT: scf.yield
// CHECK: scf.for {{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// CHECK-COUNT-4: arith.sitofp {{.*}} : vector<8xi8> to vector<8xf32>
// CHECK: %[[XS:.*]] = arith.mulf %{{.*}}, %{{.*}} : vector<8xf32>
// CHECK-NEXT: vector.fma %[[XS]], %{{.*}}, %{{.*}} : vector<8xf32>
// CHECK: return
// INT8-LABEL: func.func @packed_rows_i8
// INT8-NOT: vpdpbusd
// INT8: arith.sitofp {{.*}} : vector<16xi8> to vector<16xf32>
// INT8-NOT: vpdpbusd
// INT8: return
#ar = affine_map<(m, n, k) -> (m, k)>
#coder = affine_map<(m, n, k) -> (k, n)>
#scaler = affine_map<(m, n, k) -> (k, n floordiv 32, 0)>
#cr = affine_map<(m, n, k) -> (m, n)>
func.func @packed_rows_i8(%x: memref<?x24xf32>, %d: memref<24x64xi8>, %s: memref<24x2x1xf16>, %y: memref<?x64xf32>) {
  linalg.generic {indexing_maps = [#ar, #coder, #scaler, #cr],
                  iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %d, %s : memref<?x24xf32>, memref<24x64xi8>, memref<24x2x1xf16>)
      outs(%y : memref<?x64xf32>) attrs = {moir.packed = "i8:32", moir.kernel} {
  ^bb0(%in: f32, %code: i8, %sc: f16, %acc: f32):
    %v = arith.sitofp %code : i8 to f32
    %s32 = arith.extf %sc : f16 to f32
    %w = arith.mulf %s32, %v : f32
    %p = arith.mulf %in, %w : f32
    %sum = arith.addf %acc, %p : f32
    linalg.yield %sum : f32
  }
  return
}

// -----

// Work items of an scf.forall (the fused experts') whose moir.kernel
// products read row slices of one buffer allocated before the loop and only
// read in it: with bf16-dot the buffer is rounded and paired once before the
// loop (its groups in parallel), every item's broadcast kernel reads it at its
// slice's first row, and it is freed after the loop.
// DOT-LABEL: func.func @shared_rows
// DOT: %[[X:.*]] = memref.alloc(%{{.*}}) : memref<?x64xf32>
// DOT: %[[PAIRS:.*]] = memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi32>
// DOT: scf.parallel
// DOT: vector.load %[[X]]
// DOT: scf.forall
// DOT-NOT: memref<?xi32>
// DOT: vector.load %[[PAIRS]]{{.*}} : memref<?xi32>, vector<16xi32>
// DOT: x86vector.avx512.dot
// DOT: } else {
// DOT: x86vector.avx512.dot
// DOT: memref.dealloc %[[PAIRS]]
// DOT: memref.dealloc %[[X]]
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @shared_rows(%n: index, %m: index, %w: memref<32x64xbf16>, %y: memref<?x32xf32>) {
  %x = memref.alloc(%n) : memref<?x64xf32>
  scf.forall (%i) in (2) {
    %off = arith.muli %i, %m : index
    %xs = memref.subview %x[%off, 0] [%m, 64] [1, 1] : memref<?x64xf32> to memref<?x64xf32, strided<[64, 1], offset: ?>>
    %ys = memref.subview %y[%off, 0] [%m, 32] [1, 1] : memref<?x32xf32> to memref<?x32xf32, strided<[32, 1], offset: ?>>
    linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %w : memref<?x64xf32, strided<[64, 1], offset: ?>>, memref<32x64xbf16>)
        outs(%ys : memref<?x32xf32, strided<[32, 1], offset: ?>>) attrs = {moir.kernel} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %e = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %e fastmath<reassoc,contract> : f32
      %s = arith.addf %p, %c fastmath<reassoc,contract> : f32
      linalg.yield %s : f32
    }
  }
  memref.dealloc %x : memref<?x64xf32>
  return
}

// -----

// The same with packed int8 codes and int8 dot products: the buffer's rows
// are quantized once before the loop for the prefill kernel only where the
// buffer has 8 rows or more (fewer, a decode step's tokens times their
// experts, never reach it: each item takes the row kernel), and in the row
// layout for the decode kernel only where it has at most 64.
// INT8-LABEL: func.func @hoisted_rows_i8
// INT8: %[[X:.*]] = memref.alloc(%{{.*}}) : memref<?x64xf32>
// INT8: %[[ROWS:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x64xf32>
// INT8: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi32>
// INT8: %[[ENOUGH:.*]] = arith.cmpi uge, %[[ROWS]], %{{.*}} : index
// INT8-NEXT: scf.if %[[ENOUGH]] {
// INT8: scf.parallel
// INT8: %[[FEW:.*]] = arith.cmpi ule, %{{.*}}, %c64{{.*}} : index
// INT8: scf.if %[[FEW]]
// INT8: scf.forall
#a3 = affine_map<(m, n, k) -> (m, k)>
#code3 = affine_map<(m, n, k) -> (n, k)>
#scale3 = affine_map<(m, n, k) -> (n, k floordiv 32, 0)>
#c3 = affine_map<(m, n, k) -> (m, n)>
func.func @hoisted_rows_i8(%n: index, %m: index, %d: memref<30x64xi8>, %s: memref<30x2x1xf16>, %y: memref<?x30xf32>) {
  %x = memref.alloc(%n) : memref<?x64xf32>
  scf.forall (%i) in (2) {
    %off = arith.muli %i, %m : index
    %xs = memref.subview %x[%off, 0] [%m, 64] [1, 1] : memref<?x64xf32> to memref<?x64xf32, strided<[64, 1], offset: ?>>
    %ys = memref.subview %y[%off, 0] [%m, 30] [1, 1] : memref<?x30xf32> to memref<?x30xf32, strided<[30, 1], offset: ?>>
    linalg.generic {indexing_maps = [#a3, #code3, #scale3, #c3],
                    iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %d, %s : memref<?x64xf32, strided<[64, 1], offset: ?>>, memref<30x64xi8>, memref<30x2x1xf16>)
        outs(%ys : memref<?x30xf32, strided<[30, 1], offset: ?>>) attrs = {moir.packed = "i8:32", moir.kernel} {
    ^bb0(%in: f32, %code: i8, %sc: f16, %acc: f32):
      %v = arith.sitofp %code : i8 to f32
      %s32 = arith.extf %sc : f16 to f32
      %w = arith.mulf %s32, %v : f32
      %p = arith.mulf %in, %w : f32
      %sum = arith.addf %acc, %p : f32
      linalg.yield %sum : f32
    }
  }
  memref.dealloc %x : memref<?x64xf32>
  return
}

// -----

// With amx as well (AMX-BF16), the broadcast kernel's products over a depth
// of whole 32s run on AMX tiles, C transposed: each tdpbf16ps multiplies 16
// weight rows as stored (16 x 32 bf16, the weights' own row stride) by one
// group's 16 pairs as paired (16 rows of 16 i32 words), into 16 x 16 f32
// sums. Tiles of 2 x 2 accumulators (32 weight rows x 2 groups) stay in tile
// registers over the depth (2 steps of 32), are stored to the work item's
// buffer and added to C by rows; a last odd group takes 2 x 1. The 16 weight
// rows past the pair (48 = 32 + 16) take 1 x 2 and 1 x 1 tiles; rows past
// whole tiles (none here) would take the vdpbf16ps tiles. The module
// exports moir_uses_amx for the runtime.
// (@shared_rows above, of depth 64, is on tiles too: its module has the
// marker first.)
// AMX: llvm.mlir.global external constant @moir_uses_amx(1 : i32)
// AMX-NEXT: func.func @shared_rows
// AMX: llvm.mlir.global external constant @moir_uses_amx(1 : i32)
// AMX-NEXT: func.func @amx_tiles
// AMX: %[[PAIRS:.*]] = memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?xi32>
// AMX: scf.parallel
// AMX: %[[SUMS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<1024xf32>
// AMX-COUNT-4: amx.tile_zero : !amx.tile<16x16xf32>
// AMX: scf.for {{.*}} = %c0{{.*}} to %c2{{.*}} step %c1{{.*}} iter_args({{[^)]*}}) -> (!amx.tile<16x16xf32>, !amx.tile<16x16xf32>, !amx.tile<16x16xf32>, !amx.tile<16x16xf32>)
// AMX-COUNT-2: amx.tile_load %arg1[{{.*}}] : memref<48x64xbf16> into !amx.tile<16x32xbf16>
// AMX-COUNT-2: amx.tile_load %[[PAIRS]][{{.*}}], %c16{{.*}} : memref<?xi32> into !amx.tile<16x32xbf16>
// AMX-COUNT-4: amx.tile_mulf {{.*}} : !amx.tile<16x32xbf16>, !amx.tile<16x32xbf16>, !amx.tile<16x16xf32>
// AMX: scf.yield
// AMX-COUNT-4: amx.tile_store %[[SUMS]][{{.*}}], {{.*}}, %c16{{.*}} : memref<1024xf32>, !amx.tile<16x16xf32>
// AMX-COUNT-16: vector.load %[[SUMS]][{{.*}}] : memref<1024xf32>, vector<16xf32>
// AMX: vector.store {{.*}}, %subview{{.*}} : memref<?x48xf32, strided<[48, 1], offset: ?>>, vector<16xf32>
// AMX: memref.dealloc %[[SUMS]]
// Fewer rows (decode): the lane-sum kernel, as without amx.
// AMX: } else {
// AMX: x86vector.avx512.dot
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @amx_tiles(%x: memref<?x64xf32>, %w: memref<48x64xbf16>, %y: memref<?x48xf32>) {
  linalg.generic {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x64xf32>, memref<48x64xbf16>)
      outs(%y : memref<?x48xf32>) attrs = {moir.parallel} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %e = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %e fastmath<reassoc,contract> : f32
    %s = arith.addf %p, %c fastmath<reassoc,contract> : f32
    linalg.yield %s : f32
  }
  return
}
