//===- BF16Mma.cpp - bf16 nvgpu.mma.sync to nvvm.mma.sync ------------------===//
//
// Upstream's convert-nvgpu-to-nvvm handles f16, tf32, f64 and integer
// operands of nvgpu.mma.sync but deduces no PTX type for bf16; this pass
// lowers the bf16 form the tensor-core products use (m16n8k16, f32 sums).
//
//===----------------------------------------------------------------------===//

#include "moir/Target/NVIDIA/NVIDIATarget.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace moir {
#define GEN_PASS_DEF_NVIDIABF16MMAPASS
#include "moir/Target/NVIDIA/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// The i32 registers of a bf16 fragment: one per row of two elements.
SmallVector<Value> registers(OpBuilder &b, Location loc, Value fragment) {
  auto type = cast<VectorType>(fragment.getType());
  SmallVector<Value> regs;
  for (int64_t r = 0; r < type.getDimSize(0); ++r) {
    Value row = vector::ExtractOp::create(b, loc, fragment, ArrayRef<int64_t>{r});
    Value word = vector::BitCastOp::create(b, loc, VectorType::get({1}, b.getI32Type()), row);
    regs.push_back(vector::ExtractOp::create(b, loc, word, ArrayRef<int64_t>{0}));
  }
  return regs;
}

struct NVIDIABF16MmaPass : moir::impl::NVIDIABF16MmaPassBase<NVIDIABF16MmaPass> {
  void runOnOperation() override {
    SmallVector<nvgpu::MmaSyncOp> ops;
    getOperation().walk([&](nvgpu::MmaSyncOp op) {
      auto a = cast<VectorType>(op.getMatrixA().getType());
      if (a.getElementType().isBF16())
        ops.push_back(op);
    });
    for (nvgpu::MmaSyncOp op : ops) {
      auto a = cast<VectorType>(op.getMatrixA().getType());
      auto bType = cast<VectorType>(op.getMatrixB().getType());
      auto c = cast<VectorType>(op.getMatrixC().getType());
      SmallVector<int64_t> shape = llvm::to_vector(llvm::map_range(
          op.getMmaShape().getAsValueRange<IntegerAttr>(), [](APInt v) { return v.getSExtValue(); }));
      // The PTX ISA's only bf16 shapes with f32 sums: m16n8k8 (A 2x2, B 1x2)
      // and m16n8k16 (A 4x2, B 2x2); C is 2x2 f32 in both.
      bool known = shape.size() == 3 && shape[0] == 16 && shape[1] == 8 &&
                   (shape[2] == 8 || shape[2] == 16) &&
                   a.getShape() == ArrayRef<int64_t>{shape[2] / 4, 2} &&
                   bType.getShape() == ArrayRef<int64_t>{shape[2] / 8, 2} &&
                   bType.getElementType().isBF16() && c.getElementType().isF32() &&
                   c.getShape() == ArrayRef<int64_t>{2, 2};
      if (!known) {
        op.emitOpError("bf16 mma.sync of this shape or these types has no PTX form");
        return signalPassFailure();
      }
      OpBuilder b(op);
      Location loc = op.getLoc();
      SmallVector<Value> accs;
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t e = 0; e < 2; ++e)
          accs.push_back(vector::ExtractOp::create(b, loc, op.getMatrixC(), ArrayRef<int64_t>{r, e}));
      Type f32 = b.getF32Type();
      auto result = LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
      auto mma = NVVM::MmaOp::create(
          b, loc, result, registers(b, loc, op.getMatrixA()), registers(b, loc, op.getMatrixB()),
          accs, shape, /*b1Op=*/std::nullopt, /*intOverflow=*/std::nullopt,
          std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
          std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
      SmallVector<Value> sums;
      for (int64_t i = 0; i < 4; ++i)
        sums.push_back(LLVM::ExtractValueOp::create(b, loc, mma.getResult(), i));
      op.replaceAllUsesWith(vector::FromElementsOp::create(b, loc, c, sums).getResult());
      op.erase();
    }
  }
};

} // namespace
