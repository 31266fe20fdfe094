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
    // The fused experts' items in decode are 256 FFN (and hidden) columns:
    // each streams a 4x longer run of weight rows than the prefill's 64,
    // whose block stays in L2 while the rows pass (bench/RESULTS.md:
    // Mixtral-shaped Q4_K_M decode +7-15%, DeepSeek-V2-Lite-shaped Q8_0
    // +11%; 256 in prefill cost DeepSeek's Q8_0 prefill 9%).
    auto config = moir::LoweringConfigAttr::get(
        &getContext(), /*parallel=*/true, /*work_items=*/2 * threads, /*min_split_keys=*/256,
        /*key_block=*/64, /*query_rows=*/64, /*ffn_block=*/64, /*token_block=*/16, vectorWidth,
        /*row_quant=*/true, /*decode_ffn_block=*/256);
    getOperation()->setAttr(moir::attrs::loweringConfigName(), config);
  }
};

} // namespace
