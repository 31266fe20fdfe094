//===- MoIREnums.td - enums of MoIR's contract attributes ----*- tablegen -*-===//

#ifndef MOIR_MOIR_ENUMS
#define MOIR_MOIR_ENUMS

include "mlir/IR/EnumAttr.td"

def MoIR_ArgKind : I32EnumAttr<"ArgKind", "what an argument of the entry @forward holds", [
      I32EnumAttrCase<"tokens", 0>,
      I32EnumAttrCase<"positions", 1>,
      I32EnumAttrCase<"offset", 2>,
      I32EnumAttrCase<"cache", 3>,
      I32EnumAttrCase<"cache_scales", 4>,
      I32EnumAttrCase<"weight", 5>,
      I32EnumAttrCase<"logits_from", 6>
    ]> {
  let cppNamespace = "::moir";
  let genSpecializedAttr = 0;
}

#endif // MOIR_MOIR_ENUMS
