//===- MoEEnums.td - MoE routing enums -----------------------*- tablegen -*-===//

#ifndef MOIR_MOE_ENUMS
#define MOIR_MOE_ENUMS

include "mlir/IR/EnumAttr.td"

def MoE_Scoring : I32EnumAttr<"Scoring", "router score function", [
      I32EnumAttrCase<"softmax", 0>,
      I32EnumAttrCase<"sigmoid", 1>
    ]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::moir::moe";
}

def MoE_TopkMethod : I32EnumAttr<"TopkMethod", "expert selection method", [
      I32EnumAttrCase<"greedy", 0>,
      I32EnumAttrCase<"group_limited", 1>,
      I32EnumAttrCase<"noaux_tc", 2>
    ]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::moir::moe";
}

#endif // MOIR_MOE_ENUMS
