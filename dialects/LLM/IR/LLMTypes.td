//===- LLMTypes.td - quantized weight type -------------------*- tablegen -*-===//

#ifndef MOIR_LLM_TYPES
#define MOIR_LLM_TYPES

include "LLM/IR/LLMBase.td"

def LLM_QTensorType : TypeDef<LLM_Dialect, "QTensor"> {
  let mnemonic = "qtensor";
  let summary = "a quantized weight tensor with its scheme";
  let description = [{
    A statically shaped tensor stored in a narrow `storage` type (f8E4M3FN,
    f8E5M2, i8, i6, i4) and dequantized with scales described by the
    `#llm.quant` scheme. The logical shape is the dequantized shape. Only
    weights have this type: `llm.weight` produces it, consumers that have
    kernels for it (`llm.linear`, `llm.embedding`, the MoE expert ops, MLA)
    accept it directly, and `llm.dequantize` converts it to a float tensor.

    ```mlir
    // DeepSeek-V3 FP8 weight with 128x128 block scales.
    !llm.qtensor<7168x2048xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
    // llama.cpp Q4_K.
    !llm.qtensor<4096x4096xi4, #llm.quant<kind = gguf, format = q4_k>>
    ```
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t">:$shape,
    "::mlir::Type":$storageType,
    "::moir::llm::QuantSchemeAttr":$scheme
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRank() const { return getShape().size(); }

    /// How a backend binds this weight: the packed form of
    /// include/moir/Frontend/Quantization.h its codes are stored in ("u4",
    /// "i8" or "f8e4m3"), the elements per (scale, offset) group of the
    /// innermost dimension, and how a float source is quantized first
    /// ("" for none; "q4_k", "q8_0", "q6_k", "int4", "fp8"); whether the
    /// scales are stored as f16 (where every scale and offset of the scheme
    /// is an f16 number: GGUF's Q4_0/Q4_1/Q5_0/Q5_1/Q8_0) and whether the
    /// groups have offsets (not for symmetric schemes: Q8_0, Q6_K, FP8,
    /// INT8 per channel). std::nullopt where no packed form holds the
    /// scheme.
    struct PackedLayout {
      ::llvm::StringRef storage;
      int64_t group;
      ::llvm::StringRef quantize;
      bool halfScales = false;
      bool offsets = true;
      /// K-quant superblock scales: f16 numbers per 256 elements and a
      /// signed byte per group (include/moir/Frontend/Quantization.h).
      bool superblocks = false;
    };
    std::optional<PackedLayout> getPackedLayout() const;
    int64_t getNumElements() const;

    /// Shape of the scale tensor the weight store must provide for this
    /// scheme (rank 0 for per-tensor); std::nullopt for GGUF, whose blocks
    /// carry their scales.
    std::optional<::llvm::SmallVector<int64_t>> getScaleShape() const;
    /// Bytes the quantized data occupies (scales excluded unless GGUF,
    /// whose blocks embed them).
    int64_t getStorageBytes() const;
    /// Float tensor type of the same shape, the result of dequantization.
    ::mlir::RankedTensorType getDequantizedType(::mlir::Type elementType) const;
  }];
}

def LLM_AnyQTensor : Type<CPred<"::llvm::isa<::moir::llm::QTensorType>($_self)">,
                          "quantized tensor", "::moir::llm::QTensorType">;

// A weight operand: a float tensor or a quantized tensor.
def LLM_WeightType : AnyTypeOf<[AnyRankedTensor, LLM_AnyQTensor], "weight tensor">;

#endif // MOIR_LLM_TYPES
