//===- ConfigureLowering.cpp - the GPUs' lowering configuration -----------===//

#include "MoIR/IR/MoIRDialect.h"
#include "moir/Target/GPU/GPUTarget.h"

namespace moir {
#define GEN_PASS_DEF_GPUCONFIGURELOWERINGPASS
#include "moir/Target/GPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct GPUConfigureLoweringPass
    : moir::impl::GPUConfigureLoweringPassBase<GPUConfigureLoweringPass> {
  void runOnOperation() override {
    auto config = moir::LoweringConfigAttr::get(
        &getContext(), /*parallel=*/false, /*work_items=*/1, /*min_split_keys=*/256,
        /*key_block=*/64, /*query_rows=*/64, /*ffn_block=*/64, /*token_block=*/16,
        /*vector_width=*/1, /*row_quant=*/false, /*decode_ffn_block=*/0);
    getOperation()->setAttr(moir::attrs::loweringConfigName(), config);
  }
};

} // namespace
