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

#endif // MOIR_TARGET_HOST_PASSES
