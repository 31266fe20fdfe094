//===- OutlineLayers.cpp - one function per decoder layer ------------------===//

#include "moir/Transforms/Passes.h"
#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/SetVector.h"

namespace moir {
#define GEN_PASS_DEF_OUTLINELAYERSPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct OutlineLayersPass : moir::impl::OutlineLayersPassBase<OutlineLayersPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto forward = module.lookupSymbol<func::FuncOp>("forward");
    if (!forward || !forward.getBody().hasOneBlock())
      return;
    Block &body = forward.getBody().front();
    // Maximal runs of non-constant ops of one layer.
    SmallVector<std::pair<int64_t, SmallVector<Operation *>>> runs;
    for (Operation &op : body) {
      if (op.hasTrait<OpTrait::IsTerminator>() || matchPattern(&op, m_Constant()))
        continue;
      std::optional<int64_t> layer = moir::attrs::getLayer(&op);
      if (!layer)
        continue;
      if (runs.empty() || runs.back().first != *layer ||
          runs.back().second.back()->getNextNode() != &op)
        runs.push_back({*layer, {}});
      runs.back().second.push_back(&op);
    }
    OpBuilder b(&getContext());
    unsigned counter = 0;
    SmallVector<func::FuncOp> callees;
    for (auto &[layer, ops] : runs) {
      llvm::SmallPtrSet<Operation *, 32> inRun(ops.begin(), ops.end());
      llvm::SetVector<Value> inputs, outputs;
      SmallVector<Operation *> constants;
      for (Operation *op : ops) {
        op->walk([&](Operation *nested) {
          for (Value v : nested->getOperands()) {
            // Block arguments of the op's own regions stay inside.
            if (op->isAncestor(v.getParentBlock()->getParentOp()) &&
                v.getParentBlock()->getParentOp() != forward)
              continue;
            Operation *def = v.getDefiningOp();
            if (def && (inRun.contains(def) || op->isAncestor(def)))
              continue;
            if (def && matchPattern(def, m_Constant())) {
              if (!llvm::is_contained(constants, def))
                constants.push_back(def);
              continue;
            }
            // A packed quantized weight travels as its data and scales;
            // the layer rebuilds it, so its kernels see the packed form.
            if (auto packed = dyn_cast_if_present<moir::llm::PackedWeightOp>(def)) {
              if (!llvm::is_contained(constants, def))
                constants.push_back(def);
              inputs.insert(packed.getData());
              inputs.insert(packed.getScales());
              continue;
            }
            inputs.insert(v);
          }
        });
        for (Value r : op->getResults())
          for (Operation *user : r.getUsers())
            if (!inRun.contains(body.findAncestorOpInBlock(*user)))
              outputs.insert(r);
      }
      // The callee.
      b.setInsertionPoint(forward);
      std::string name = "layer_" + std::to_string(layer);
      if (module.lookupSymbol(name))
        name += "_" + std::to_string(counter++);
      SmallVector<Type> inTypes, outTypes;
      for (Value v : inputs)
        inTypes.push_back(v.getType());
      for (Value v : outputs)
        outTypes.push_back(v.getType());
      auto callee = func::FuncOp::create(b, ops.front()->getLoc(), name,
                                         b.getFunctionType(inTypes, outTypes));
      callee.setPrivate();
      // Backends keep layer functions out of line (see moir-export-entry).
      moir::attrs::setLayer(callee, layer);
      Block *entry = callee.addEntryBlock();
      IRMapping map;
      for (auto [v, arg] : llvm::zip(inputs, entry->getArguments()))
        map.map(v, arg);
      b.setInsertionPointToStart(entry);
      for (Operation *c : constants)
        b.clone(*c, map);
      // The layer is the callee's now (its ops drop moir.layer, as do
      // those left in @forward below).
      for (Operation *op : ops)
        b.clone(*op, map)->walk(
            [](Operation *nested) { nested->removeAttr(moir::attrs::layerName()); });
      SmallVector<Value> returned;
      for (Value v : outputs)
        returned.push_back(map.lookup(v));
      func::ReturnOp::create(b, ops.back()->getLoc(), returned);
      // The call.
      b.setInsertionPoint(ops.front());
      auto call = func::CallOp::create(b, ops.front()->getLoc(), callee, inputs.getArrayRef());
      for (auto [i, v] : llvm::enumerate(outputs.getArrayRef())) {
        Value out = v;
        out.replaceAllUsesWith(call.getResult(i));
      }
      for (Operation *op : llvm::reverse(ops))
        op->erase();
      callees.push_back(callee);
    }
    shareIdenticalLayers(module, callees);
  }

  /// Layers of one shape (a model's MoE layers, say) outline to functions
  /// that differ only in name: their weights and caches are arguments. Each
  /// call goes to the first of its kind and the copies go, so code
  /// generation compiles every distinct layer once, not once per layer.
  static void shareIdenticalLayers(ModuleOp module, ArrayRef<func::FuncOp> callees) {
    // Each callee's calls (all in @forward).
    DenseMap<func::FuncOp, SmallVector<func::CallOp>> calls;
    for (func::FuncOp callee : callees)
      calls[callee];
    module.walk([&](func::CallOp call) {
      if (auto callee = module.lookupSymbol<func::FuncOp>(call.getCalleeAttr()))
        if (auto it = calls.find(callee); it != calls.end())
          it->second.push_back(call);
    });
    SmallVector<func::FuncOp> kept;
    for (func::FuncOp callee : callees) {
      auto same = llvm::find_if(kept, [&](func::FuncOp k) {
        return k.getFunctionType() == callee.getFunctionType() &&
               OperationEquivalence::isRegionEquivalentTo(&k.getBody(), &callee.getBody(),
                                                          OperationEquivalence::IgnoreLocations);
      });
      if (same == kept.end()) {
        kept.push_back(callee);
        continue;
      }
      for (func::CallOp call : calls[callee])
        call.setCalleeAttr(FlatSymbolRefAttr::get((*same).getSymNameAttr()));
      callee.erase();
    }
  }
};

} // namespace
