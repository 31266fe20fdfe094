//===- ConfigureLowering.cpp - the CPU's lowering configuration -----------===//

#include "MoIR/IR/MoIRDialect.h"
#include "moir/Target/CPU/CPUTarget.h"

namespace moir {
#define GEN_PASS_DEF_CPUCONFIGURELOWERINGPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct CPUConfigureLoweringPass
    : moir::impl::CPUConfigureLoweringPassBase<CPUConfigureLoweringPass> {
  using Base::Base;

  void runOnOperation() override {
    if (threads < 1 || vectorWidth < 1) {
      getOperation().emitError("moir-cpu-configure-lowering: threads and vector-width must be "
                               "positive");
      return signalPassFailure();
    }
    // Two work items per core balance uneven items (causal attention); a
    // key split below 256 keys costs more in its combine than it gains.
    auto config = moir::LoweringConfigAttr::get(
        &getContext(), /*parallel=*/true, /*work_items=*/2 * threads, /*min_split_keys=*/256,
        /*key_block=*/64, /*query_rows=*/64, /*ffn_block=*/64, /*token_block=*/16, vectorWidth,
        /*row_quant=*/true);
    getOperation()->setAttr(moir::attrs::loweringConfigName(), config);
  }
};

} // namespace
