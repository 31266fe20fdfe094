//===- MLAEnums.td - MLA enums -------------------------------*- tablegen -*-===//

#ifndef MOIR_MLA_ENUMS
#define MOIR_MLA_ENUMS

include "mlir/IR/EnumAttr.td"

def MLA_FormAttr : I32EnumAttr<"Form", "how latent attention applies kv_b_proj", [
      I32EnumAttrCase<"materialized", 0>,
      I32EnumAttrCase<"absorbed", 1>
    ]> {
  let cppNamespace = "::moir::mla";
}

#endif // MOIR_MLA_ENUMS
