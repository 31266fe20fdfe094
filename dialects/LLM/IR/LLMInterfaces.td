//===- LLMInterfaces.td - op interfaces shared by MoIR dialects -*- tablegen -*-===//

#ifndef MOIR_LLM_INTERFACES
#define MOIR_LLM_INTERFACES

include "mlir/IR/OpBase.td"

def LLM_WeightRefOpInterface : OpInterface<"WeightRefOpInterface"> {
  let cppNamespace = "::moir::llm";
  let description = [{
    An op that names tensors of the model's weight store. Backends ask these
    ops which tensors to pack into the artifact; the importer's contract check
    uses it to list every weight a module needs.
  }];
  let methods = [
    InterfaceMethod<"Names of the weight-store tensors this op reads, "
                    "data first, then scales.",
      "::llvm::SmallVector<::llvm::StringRef>", "getWeightNames">
  ];
}

def LLM_QuantizedWeightConsumerOpInterface
    : OpInterface<"QuantizedWeightConsumerOpInterface"> {
  let cppNamespace = "::moir::llm";
  let description = [{
    An op with kernels that read some weight operands in their stored,
    quantized precision. Canonicalization replaces `llm.dequantize` feeding
    such an operand with the quantized value itself, so weights stay in
    their stored precision down to the backend.
  }];
  let methods = [
    InterfaceMethod<"Whether operand `index` may be an `!llm.qtensor`.",
      "bool", "acceptsQuantizedOperand", (ins "unsigned":$index)>
  ];
}

#endif // MOIR_LLM_INTERFACES
