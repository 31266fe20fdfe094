//===- quant_fuzzer.cpp - libFuzzer target for the weight packer -----------===//
//
// The input picks a source format, a packed format (storage, group,
// compile-time quantization, f16 scales, offsets or not), a shape and a few
// defects (a missing companion, a wrong companion shape or dtype, a 3-D
// stack); the rest of the bytes fill the tensors: blocks, scales, zero points
// and g_idx. packWeights must either fail with an error or write exactly
// getPackedBytes bytes; it must never crash. A GPTQ g_idx is first read as
// the importer reads it (readGPTQGroupOrder); an act-order one is packed from
// its sorted form (addSortedGPTQ), output rows reversed or as stored. Kind 14
// with flag 32 is compressed-tensors' pack-quantized (flag 64: 8-bit).
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/Quantization.h"

#include <cstdlib>
#include <string>
#include <vector>

using namespace moir::frontend;

namespace {

struct Builder {
  const uint8_t *payload;
  size_t payloadSize, cursor = 0;
  std::string bytes;
  std::vector<TensorInfo> infos;

  void add(const std::string &name, DType dtype, llvm::SmallVector<int64_t> shape,
           bool corruptBytes = false) {
    TensorInfo info;
    info.name = name;
    info.dtype = dtype;
    info.shape = shape;
    int64_t elements = 1;
    for (int64_t d : shape)
      elements *= d;
    uint64_t size = getStorageBytes(dtype, elements).value_or(0);
    info.offset = bytes.size();
    info.bytes = corruptBytes ? size + 1 : size;
    for (uint64_t i = 0; i < size; ++i)
      bytes.push_back(static_cast<char>(payload[cursor++ % payloadSize]));
    infos.push_back(std::move(info));
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5)
    return 0;
  uint8_t kind = data[0] % 16, formatByte = data[1], dims = data[2], flags = data[3];
  Builder b{data + 4, size - 4};
  int64_t rows = 1 + dims % 4, blocks = 1 + (dims >> 2) % 3;
  int64_t stack = flags & 16 ? 2 : 1;
  // Companion defects: missing, wrong shape, wrong dtype.
  bool drop = flags & 1, reshape = flags & 2, retype = flags & 4;
  auto dim = [&](int64_t d) { return reshape ? d + 1 : d; };
  std::string name = "w.weight";
  int64_t cols = 32 * blocks;
  const DType gguf[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                        DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  if (kind < 8) {
    DType dtype = gguf[kind];
    cols = getBlockElements(dtype) * blocks;
    b.add(name, dtype, {stack, rows, cols}, flags & 32);
  } else if (kind < 11) {
    DType dtype = kind == 8 ? DType::F32 : kind == 9 ? DType::F16 : DType::BF16;
    cols = (flags & 64 ? 256 : 32) * blocks;
    b.add(name, dtype, {rows, cols}, flags & 32);
  } else if (kind == 11) {
    // DeepSeek-V3 block FP8 with partial blocks.
    cols = 8 * (1 + dims % 40);
    rows = 1 + (dims >> 3) * 5;
    b.add(name, DType::F8E4M3, {stack, rows, cols});
    if (!drop)
      b.add(name + "_scale_inv", retype ? DType::F16 : DType::F32,
            {stack, dim((rows + 127) / 128), (cols + 127) / 128});
  } else if (kind == 12 || kind == 13) {
    // Per-row scales: fbgemm FP8, INT8.
    b.add(name, kind == 12 ? DType::F8E4M3 : DType::I8, {rows, cols});
    if (!drop)
      b.add(name + "_scale", retype ? DType::I32 : DType::BF16, {dim(rows), 1});
  } else if (kind == 14 && flags & 32) {
    // compressed-tensors pack-quantized: 4- or 8-bit codes along the inputs,
    // [rows, groups] scales, zero points packed along the rows.
    int bits = flags & 64 ? 8 : 4;
    rows = 1 + dims % 12;
    int64_t groups = blocks == 3 ? 1 : blocks;
    name = "m.weight_packed";
    b.add(name, DType::I32, {rows, cols * bits / 32});
    b.add("m.weight_scale", retype ? DType::I8 : DType::BF16, {dim(rows), groups});
    if (!drop)
      b.add("m.weight_zero_point", DType::I32, {(rows * bits + 31) / 32, groups});
  } else {
    // AWQ (14) and GPTQ (15): 8 outputs or inputs per int32.
    bool awq = kind == 14;
    rows = 8 * (1 + dims % 3);
    int64_t groups = blocks == 3 ? 1 : blocks; // groups of 32 or 96
    name = "m.qweight";
    b.add(name, DType::I32, awq ? llvm::SmallVector<int64_t>{cols, rows / 8}
                                : llvm::SmallVector<int64_t>{cols / 8, rows});
    b.add("m.scales", retype ? DType::I8 : DType::F16, {groups, rows});
    if (!drop)
      b.add("m.qzeros", DType::I32, {dim(groups), rows / 8});
    if (!awq || flags & 8)
      b.add("m.g_idx", DType::I32, {cols});
  }

  WeightStore store;
  unsigned file = store.addFile(llvm::MemoryBuffer::getMemBufferCopy(b.bytes, "fuzz"),
                                "fuzz.bin");
  for (TensorInfo &info : b.infos) {
    info.file = file;
    if (llvm::Error err = store.addTensor(info))
      abort();
  }

  const PackedStorage storages[] = {PackedStorage::U4, PackedStorage::I8,
                                    PackedStorage::F8E4M3};
  const int64_t groupChoices[] = {4, 8, 16, 32, 64, 128, 0};
  PackedFormat format;
  format.storage = storages[formatByte % 3];
  format.group = groupChoices[(formatByte / 3) % 7];
  if (!format.group)
    format.group = cols;
  const CompileQuant quants[] = {CompileQuant::None, CompileQuant::Q8_0, CompileQuant::Q4_K,
                                 CompileQuant::Q6_K, CompileQuant::Int4, CompileQuant::FP8};
  format.quantize = quants[(formatByte / 21) % 6];
  // The kind byte's high bits: f16 scales, no offsets (symmetric forms),
  // superblock scales (K-quants).
  format.halfScales = data[0] & 16;
  format.offsets = !(data[0] & 32);
  format.superblocks = data[0] & 64;
  int64_t totalRows = kind < 8 || kind == 11 ? stack * rows : rows;

  if (kind == 15 && store.lookup("m.g_idx")) {
    llvm::Expected<GPTQGroupOrder> order =
        readGPTQGroupOrder(store, *store.lookup(name), rows, cols);
    if (!order) {
      llvm::consumeError(order.takeError());
      return 0;
    }
    if (!order->trivial || flags & 32) {
      std::vector<int32_t> rowOrder;
      if (flags & 32)
        for (int64_t n = rows - 1; n >= 0; --n)
          rowOrder.push_back(static_cast<int32_t>(n));
      llvm::Expected<std::string> sorted =
          addSortedGPTQ(store, *store.lookup(name), rows, cols, *order, rowOrder);
      if (!sorted) {
        llvm::consumeError(sorted.takeError());
        return 0;
      }
      name = *sorted;
    }
  }

  for (PackedPart part : {PackedPart::Data, PackedPart::Scales}) {
    uint64_t written = 0;
    llvm::Error err = packWeights(store, {name}, cols, format, part,
                                  [&](llvm::StringRef s) { written += s.size(); });
    if (err) {
      llvm::consumeError(std::move(err));
      return 0;
    }
    if (written != getPackedBytes(format, part, totalRows, cols))
      abort();
  }
  return 0;
}
