//===- Passes.td - CPU backend passes ------------------------*- tablegen -*-===//

#ifndef MOIR_TARGET_CPU_PASSES
#define MOIR_TARGET_CPU_PASSES

include "mlir/Pass/PassBase.td"

def CPUPrepareABIPass : Pass<"moir-cpu-prepare-abi", "mlir::ModuleOp"> {
  let summary = "records @forward's buffer signature and lowers memref.copy to linalg";
  let description = [{
    Runs after bufferization. Stores on `@forward` the attribute `moir.abi`:
    per argument, the rank of its memref, or -1 for an index. The exported
    entry (`moir-cpu-export-entry`) unpacks arguments with it. Each
    `memref.copy` becomes a `linalg.copy`, so the generated code needs no
    runtime copy helper (only libc's malloc/free and libm).
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def CPUExportEntryPass : Pass<"moir-cpu-export-entry", "mlir::ModuleOp"> {
  let summary = "adds the exported entry `moir_forward(void **args)`";
  let description = [{
    Runs on the LLVM dialect. `moir_forward` receives one pointer per
    argument of `@forward`: to a memref descriptor
    `{allocated, aligned, offset, sizes[rank], strides[rank]}` for a buffer,
    to an int64 for an index. It loads them and calls `@forward`. The runtime
    needs no knowledge of MLIR beyond that descriptor layout.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def CPUParallelizePass : Pass<"moir-cpu-parallelize"> {
  let summary = "turns the linalg ops marked moir.parallel into scf.parallel loops";
  let description = [{
    The lowering marks the contractions worth splitting across cores
    (projections, expert matmuls, attention); this pass gives them parallel
    loops (`linalgOpToParallelLoops`), which `convert-scf-to-openmp` turns into
    OpenMP worksharing loops run by the runtime's thread pool. Other linalg
    ops keep sequential loops: a fork per small element-wise op would cost
    more than it saves.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::memref::MemRefDialect"];
}

#endif // MOIR_TARGET_CPU_PASSES
