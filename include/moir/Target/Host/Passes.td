//===- Passes.td - the host layer every target shares ----------*- tablegen -*-===//
//
// What every target's artifact needs on the host: the entry's buffer ABI and
// its exported wrapper `moir_forward`.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_HOST_PASSES
#define MOIR_TARGET_HOST_PASSES

include "mlir/Pass/PassBase.td"

def PrepareEntryABIPass : Pass<"moir-prepare-entry-abi", "mlir::ModuleOp"> {
  let summary = "records @forward's buffer signature and lowers memref.copy to linalg";
  let description = [{
    Runs after bufferization. Stores on `@forward` the attribute `moir.abi`:
    per argument, the rank of its memref, or -1 for an index. The exported
    entry (`moir-export-entry`) unpacks arguments with it. Each
    `memref.copy` becomes a `linalg.copy`, so the generated code needs no
    runtime copy helper (only libc's malloc/free and libm). Every target
    runs it: a GPU's copies become kernels like any other linalg op.

    ```mlir
    // before
    func.func private @forward(%t: memref<?xi32>, %o: index, %c: memref<8x4xf32>) {
      memref.copy %a, %b : memref<4xf32> to memref<4xf32>
    // after
    func.func private @forward(...) attributes {moir.abi = array<i64: 1, -1, 2>} {
      linalg.copy ins(%a : memref<4xf32>) outs(%b : memref<4xf32>)
    ```
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def ExportEntryPass : Pass<"moir-export-entry", "mlir::ModuleOp"> {
  let summary = "adds the exported entry `moir_forward(void **args)`";
  let description = [{
    Runs on the LLVM dialect. `moir_forward` receives one pointer per
    argument of `@forward`: to a memref descriptor
    `{allocated, aligned, offset, sizes[rank], strides[rank]}` for a buffer,
    to an int64 for an index. It loads them and calls `@forward`. The runtime
    needs no knowledge of MLIR beyond that descriptor layout. Functions
    outlined per layer (`moir.layer`) are kept out of line.

    ```mlir
    // before: llvm.func @forward(%alloc: !llvm.ptr, %aligned: !llvm.ptr, %off: i64, ...)
    //         with moir.abi = array<i64: 1, -1>
    // after, in addition:
    llvm.func @moir_forward(%args: !llvm.ptr) {
      // load each descriptor field from args[i], then
      llvm.call @forward(...)
    ```
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def HostToLLVMPass : Pass<"moir-host-to-llvm", "mlir::ModuleOp"> {
  let summary = "the host code's memref, math, arith, index, OpenMP, cf and func ops to "
                "the LLVM dialect, in one conversion";
  let description = [{
    Runs after the vector ops (CPU) or the GPU launches (GPU targets) are
    LLVM already. One dialect conversion with one type converter replaces
    the eight passes of MLIR's own (finalize-memref-to-llvm,
    convert-math-to-llvm, convert-math-to-libm, convert-arith-to-llvm,
    convert-index-to-llvm, convert-openmp-to-llvm, convert-cf-to-llvm,
    convert-func-to-llvm), each of which converted the whole module on its
    own. With it, and moir-expand-fp8 and moir-cpu-approximate-math
    visiting only their own ops, moirc's MLIR phases on a Q4_K int8 compile
    went from 6.3 to 4.8 G instructions (callgrind; bench/RESULTS.md), the
    machine code unchanged. A math op with an LLVM intrinsic becomes the
    intrinsic (the higher benefit), any other a libm call, as the two passes
    in sequence did. Casts between the old and new types stay for
    reconcile-unrealized-casts.

    ```mlir
    // before
    func.func private @f(%m: memref<4xf32>, %i: index) -> f32 {
      %x = memref.load %m[%i] : memref<4xf32>
      %y = math.sqrt %x : f32
      return %y : f32
    }
    // after (with reconcile-unrealized-casts and canonicalize)
    llvm.func @f(%a: !llvm.ptr, %b: !llvm.ptr, %o: i64, %s: i64, %st: i64, %i: i64) -> f32
        attributes {sym_visibility = "private"} {
      %p = llvm.getelementptr inbounds|nuw %b[%i] : (!llvm.ptr, i64) -> !llvm.ptr, f32
      %x = llvm.load %p : !llvm.ptr -> f32
      %y = llvm.intr.sqrt(%x) : (f32) -> f32
      llvm.return %y : f32
    }
    ```
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect", "::mlir::func::FuncDialect"];
}

#endif // MOIR_TARGET_HOST_PASSES
