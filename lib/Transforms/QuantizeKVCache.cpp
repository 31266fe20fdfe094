//===- QuantizeKVCache.cpp - int8 / FP8 KV caches with row scales ----------===//

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace moir {
#define GEN_PASS_DEF_QUANTIZEKVCACHEPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

struct QuantizeKVCachePass : moir::impl::QuantizeKVCachePassBase<QuantizeKVCachePass> {
  using Base::Base;

  void runOnOperation() override {
    std::optional<llm::CacheFormat> cacheFormat;
    if (format == "int8")
      cacheFormat = llm::CacheFormat::int8;
    else if (format == "fp8" || format == "fp8_e4m3")
      cacheFormat = llm::CacheFormat::fp8_e4m3;
    if (!cacheFormat) {
      getOperation()->emitError("moir-quantize-kv-cache: unknown format '")
          << format << "' (known: int8, fp8)";
      return signalPassFailure();
    }
    auto forward = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!forward)
      return;
    MLIRContext *ctx = &getContext();
    Type storage = *cacheFormat == llm::CacheFormat::int8 ? Type(IntegerType::get(ctx, 8))
                                                          : Type(Float8E4M3FNType::get(ctx));
    auto formatAttr = llm::CacheFormatAttr::get(ctx, *cacheFormat);

    SmallVector<llm::KVCacheUpdateOp> updates;
    forward.walk([&](llm::KVCacheUpdateOp op) {
      auto arg = dyn_cast<BlockArgument>(op.getCache());
      if (arg && arg.getOwner() == &forward.front() && arg.hasOneUse())
        updates.push_back(op);
    });
    auto ret = cast<func::ReturnOp>(forward.front().getTerminator());
    OpBuilder b(ctx);
    KeepLayers keep;
    b.setListener(&keep);
    for (llm::KVCacheUpdateOp op : updates) {
      auto arg = cast<BlockArgument>(op.getCache());
      auto cacheType = cast<RankedTensorType>(arg.getType());
      auto storageType = cacheType.clone(storage);
      auto scalesType = RankedTensorType::get(cacheType.getShape().drop_back(), b.getF32Type());
      // The scales argument right after its cache: the runtime allocates
      // both as caches, in order.
      unsigned index = arg.getArgNumber();
      if (failed(forward.insertArgument(
              index + 1, scalesType,
              b.getDictionaryAttr(b.getNamedAttr(
                  attrs::argName(), EntryArgAttr::get(ctx, ArgKind::cache_scales, nullptr))),
              arg.getLoc()))) {
        op.emitError("moir-quantize-kv-cache: cannot add the scales argument");
        return signalPassFailure();
      }
      arg.setType(storageType);
      Value scales = forward.getArgument(index + 1);

      b.setInsertionPoint(op);
      auto update = llm::QuantizedCacheUpdateOp::create(b, op.getLoc(), storageType, scalesType,
                                                        formatAttr, op.getUpdate(), arg, scales,
                                                        op.getOffset());
      Value dequantized;
      SmallVector<OpOperand *> uses;
      for (OpOperand &use : op.getResult().getUses())
        uses.push_back(&use);
      for (OpOperand *use : uses) {
        if (use->getOwner() == ret.getOperation())
          continue;
        if (!dequantized)
          dequantized = llm::DequantizeCacheOp::create(b, op.getLoc(), cacheType, formatAttr,
                                                       update.getResult(),
                                                       update.getResultScales());
        use->set(dequantized);
      }
      // Returned caches: the storage in the cache's place, the scales after
      // it.
      SmallVector<Value> results(ret.getOperands());
      SmallVector<Type> resultTypes(forward.getResultTypes());
      for (size_t i = 0; i < results.size(); ++i) {
        if (results[i] != op.getResult())
          continue;
        results[i] = update.getResult();
        resultTypes[i] = storageType;
        results.insert(results.begin() + i + 1, update.getResultScales());
        resultTypes.insert(resultTypes.begin() + i + 1, scalesType);
        ++i;
      }
      ret->setOperands(results);
      forward.setType(FunctionType::get(ctx, forward.front().getArgumentTypes(), resultTypes));
      op.erase();
    }
  }
};

} // namespace
