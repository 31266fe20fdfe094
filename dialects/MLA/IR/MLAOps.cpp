//===- MLAOps.cpp - Multi-head Latent Attention ops -----------------------===//

#include "MLA/IR/MLAOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace moir;
using namespace moir::mla;
using llm::getWeightShape;
using llm::verifyDim;
using llm::verifyRank;

#define GET_OP_CLASSES
#include "MLA/IR/MLAOps.cpp.inc"

/// Checks a `[rows, cols]` weight operand.
static LogicalResult verifyMatrix(Operation *op, StringRef what, Type type,
                                  int64_t rows, int64_t cols) {
  if (failed(verifyRank(op, what, type, 2)))
    return failure();
  ArrayRef<int64_t> shape = getWeightShape(type);
  if (shape[0] != rows || shape[1] != cols)
    return op->emitOpError() << what << " must be " << rows << "x" << cols
                             << ", got " << type;
  return success();
}

static LogicalResult verifyVector(Operation *op, StringRef what, Type type,
                                  int64_t size) {
  if (failed(verifyRank(op, what, type, 1)))
    return failure();
  return verifyDim(op, Twine(what + " size").str(),
                   cast<RankedTensorType>(type).getDimSize(0), size);
}

/// Latent cache `[capacity, kv_lora_rank]` and RoPE cache
/// `[capacity, qk_rope_head_dim]` of the same capacity.
static LogicalResult verifyCaches(Operation *op, ConfigAttr config,
                                  RankedTensorType latent,
                                  RankedTensorType rope) {
  if (failed(verifyRank(op, "latent cache", latent, 2)) ||
      failed(verifyRank(op, "rope cache", rope, 2)) ||
      failed(verifyDim(op, "latent cache width", latent.getDimSize(1),
                       config.getKvLoraRank())) ||
      failed(verifyDim(op, "rope cache width", rope.getDimSize(1),
                       config.getQkRopeHeadDim())) ||
      failed(verifyDim(op, "rope cache capacity", rope.getDimSize(0),
                       latent.getDimSize(0))))
    return failure();
  return success();
}

static bool isWeightOperand(Operation *op, unsigned index,
                            ArrayRef<OpOperand *> weights) {
  return llvm::any_of(weights, [&](OpOperand *operand) {
    return operand && operand->getOperandNumber() == index;
  });
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::verify() {
  ConfigAttr config = getConfig();
  auto input = getInput().getType();
  if (failed(verifyRank(*this, "input", input, 2)) ||
      failed(verifyRank(*this, "positions", getPositions().getType(), 1)) ||
      failed(verifyDim(*this, "positions size",
                       getPositions().getType().getDimSize(0),
                       input.getDimSize(0))))
    return failure();
  int64_t hidden = input.getDimSize(1);
  if (ShapedType::isDynamic(hidden))
    return emitOpError("hidden dimension must be static");
  if (getType(0) != input)
    return emitOpError("result type must equal the input type");
  if (getType(1) != getLatentCache().getType() ||
      getType(2) != getRopeCache().getType())
    return emitOpError("updated caches must have the caches' types");
  if (failed(verifyCaches(*this, config, getLatentCache().getType(),
                          getRopeCache().getType())))
    return failure();
  if (getRope().getDim() != config.getQkRopeHeadDim())
    return emitOpError("rope dim ") << getRope().getDim()
                                    << " must equal qk_rope_head_dim "
                                    << config.getQkRopeHeadDim();
  if (getScale().convertToDouble() <= 0.0 || getEpsilon().convertToDouble() <= 0.0)
    return emitOpError("scale and epsilon must be positive");

  int64_t heads = config.getNumHeads();
  int64_t qRows = heads * config.getQHeadDim();
  if (config.getQLoraRank() == 0) {
    if (!getQProj() || getQAProj())
      return emitOpError("q_lora_rank = 0 needs q(...) and no q_lora(...)");
    if (failed(verifyMatrix(*this, "q_proj", getQProj().getType(), qRows, hidden)))
      return failure();
  } else {
    if (getQProj() || !getQAProj())
      return emitOpError("q_lora_rank > 0 needs q_lora(...) and no q(...)");
    int64_t rank = config.getQLoraRank();
    if (failed(verifyMatrix(*this, "q_a_proj", getQAProj().getType(), rank, hidden)) ||
        failed(verifyVector(*this, "q_a_norm", getQANorm().getType(), rank)) ||
        failed(verifyMatrix(*this, "q_b_proj", getQBProj().getType(), qRows, rank)))
      return failure();
  }
  int64_t kvLora = config.getKvLoraRank();
  if (failed(verifyMatrix(*this, "kv_a_proj", getKvAProj().getType(),
                          config.getCacheWidth(), hidden)) ||
      failed(verifyVector(*this, "kv_a_norm", getKvANorm().getType(), kvLora)) ||
      failed(verifyMatrix(*this, "kv_b_proj", getKvBProj().getType(),
                          heads * (config.getQkNopeHeadDim() + config.getVHeadDim()),
                          kvLora)) ||
      failed(verifyMatrix(*this, "o_proj", getOProj().getType(), hidden,
                          heads * config.getVHeadDim())))
    return failure();
  return success();
}

bool AttentionOp::acceptsQuantizedOperand(unsigned index) {
  auto first = [](MutableOperandRange range) -> OpOperand * {
    return range.empty() ? nullptr : &range[0];
  };
  return isWeightOperand(*this, index,
                         {first(getQProjMutable()), first(getQAProjMutable()),
                          first(getQBProjMutable()), &getKvAProjMutable(),
                          &getKvBProjMutable(), &getOProjMutable()});
}

//===----------------------------------------------------------------------===//
// AttendOp
//===----------------------------------------------------------------------===//

LogicalResult AttendOp::verify() {
  ConfigAttr config = getConfig();
  auto qNope = getQNope().getType();
  auto qPe = getQPe().getType();
  auto result = getType();
  if (failed(verifyRank(*this, "q_nope", qNope, 3)) ||
      failed(verifyRank(*this, "q_pe", qPe, 3)) ||
      failed(verifyRank(*this, "result", result, 3)) ||
      failed(verifyRank(*this, "positions", getPositions().getType(), 1)))
    return failure();
  int64_t heads = config.getNumHeads();
  if (failed(verifyDim(*this, "q_nope heads", qNope.getDimSize(1), heads)) ||
      failed(verifyDim(*this, "q_nope head dimension", qNope.getDimSize(2),
                       config.getQkNopeHeadDim())) ||
      failed(verifyDim(*this, "q_pe tokens", qPe.getDimSize(0), qNope.getDimSize(0))) ||
      failed(verifyDim(*this, "q_pe heads", qPe.getDimSize(1), heads)) ||
      failed(verifyDim(*this, "q_pe head dimension", qPe.getDimSize(2),
                       config.getQkRopeHeadDim())) ||
      failed(verifyDim(*this, "positions size",
                       getPositions().getType().getDimSize(0), qNope.getDimSize(0))) ||
      failed(verifyDim(*this, "result tokens", result.getDimSize(0),
                       qNope.getDimSize(0))) ||
      failed(verifyDim(*this, "result heads", result.getDimSize(1), heads)) ||
      failed(verifyDim(*this, "result head dimension", result.getDimSize(2),
                       config.getVHeadDim())))
    return failure();
  if (failed(verifyCaches(*this, config, getLatentCache().getType(),
                          getRopeCache().getType())))
    return failure();
  if (getScale().convertToDouble() <= 0.0)
    return emitOpError("scale must be positive");
  return verifyMatrix(*this, "kv_b_proj", getKvBProj().getType(),
                      heads * (config.getQkNopeHeadDim() + config.getVHeadDim()),
                      config.getKvLoraRank());
}

bool AttendOp::acceptsQuantizedOperand(unsigned index) {
  return index == getKvBProjMutable().getOperandNumber();
}
