//===- DynamicSchedule.cpp - worksharing loops taken as the threads come ---===//

#include "moir/Target/CPU/CPUTarget.h"

#include "mlir/Dialect/OpenMP/OpenMPDialect.h"

namespace moir {
#define GEN_PASS_DEF_CPUDYNAMICSCHEDULEPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct CPUDynamicSchedulePass
    : moir::impl::CPUDynamicSchedulePassBase<CPUDynamicSchedulePass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    getOperation()->walk([&](omp::WsloopOp loop) {
      // Only a team's loops (a loop outside a parallel region has no one
      // to share with) and only where no schedule was chosen.
      if (loop.getScheduleKind() || !loop->getParentOfType<omp::ParallelOp>())
        return;
      loop.setScheduleKindAttr(
          omp::ClauseScheduleKindAttr::get(context, omp::ClauseScheduleKind::Dynamic));
    });
  }
};

} // namespace
