//===- WeightStore.cpp - memory-mapped checkpoint tensors -----------------===//

#include "moir/Frontend/WeightStore.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Process.h"

#include <cstring>

#ifdef LLVM_ON_UNIX
#include <sys/mman.h>
#endif

using namespace llvm;

namespace moir::frontend {

std::string shapeString(ArrayRef<int64_t> shape) {
  return "[" + join(map_range(shape, [](int64_t d) { return std::to_string(d); }), ", ") + "]";
}

StringRef stringifyDType(DType dtype) {
  switch (dtype) {
  case DType::F32: return "F32";
  case DType::F16: return "F16";
  case DType::BF16: return "BF16";
  case DType::F8E4M3: return "F8_E4M3";
  case DType::I8: return "I8";
  case DType::I32: return "I32";
  case DType::I64: return "I64";
  case DType::Q8_0: return "Q8_0";
  case DType::Q4_0: return "Q4_0";
  case DType::Q4_1: return "Q4_1";
  case DType::Q5_0: return "Q5_0";
  case DType::Q5_1: return "Q5_1";
  case DType::Q4_K: return "Q4_K";
  case DType::Q5_K: return "Q5_K";
  case DType::Q6_K: return "Q6_K";
  }
  return "?";
}

bool isGGUFBlockType(DType dtype) { return getBlockElements(dtype) > 1; }

int64_t getBlockElements(DType dtype) {
  switch (dtype) {
  case DType::Q8_0:
  case DType::Q4_0:
  case DType::Q4_1:
  case DType::Q5_0:
  case DType::Q5_1:
    return 32;
  case DType::Q4_K:
  case DType::Q5_K:
  case DType::Q6_K:
    return 256;
  default:
    return 1;
  }
}

int64_t getBlockBytes(DType dtype) {
  switch (dtype) {
  case DType::F32: case DType::I32: return 4;
  case DType::F16: case DType::BF16: return 2;
  case DType::F8E4M3: case DType::I8: return 1;
  case DType::I64: return 8;
  // f16 d (and f16 m or dmin), 5th bits, scales, codes.
  case DType::Q8_0: return 2 + 32;
  case DType::Q4_0: return 2 + 16;
  case DType::Q4_1: return 2 + 2 + 16;
  case DType::Q5_0: return 2 + 4 + 16;
  case DType::Q5_1: return 2 + 2 + 4 + 16;
  case DType::Q4_K: return 2 + 2 + 12 + 128;
  case DType::Q5_K: return 2 + 2 + 12 + 32 + 128;
  case DType::Q6_K: return 128 + 64 + 16 + 2;
  }
  return 0;
}

std::optional<uint64_t> getStorageBytes(DType dtype, int64_t elements) {
  int64_t block = getBlockElements(dtype);
  if (elements < 0 || elements % block != 0)
    return std::nullopt;
  uint64_t blocks = static_cast<uint64_t>(elements / block);
  uint64_t width = static_cast<uint64_t>(getBlockBytes(dtype));
  if (blocks != 0 && width > UINT64_MAX / blocks)
    return std::nullopt;
  return blocks * width;
}

int64_t TensorInfo::getNumElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

Error fileError(StringRef file, const Twine &message) {
  return createStringError(inconvertibleErrorCode(), file + ": " + message);
}

Expected<unsigned> WeightStore::mapFile(StringRef path) {
  // Map, never read: weights stay on disk until a backend packs them.
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(
      path, /*IsText=*/false, /*RequiresNullTerminator=*/false,
      /*IsVolatile=*/false);
  if (std::error_code ec = buffer.getError())
    return fileError(path, "cannot open: " + ec.message());
  return addFile(std::move(*buffer), path);
}

unsigned WeightStore::addFile(std::unique_ptr<MemoryBuffer> buffer, StringRef path) {
  files.push_back(std::move(buffer));
  paths.push_back(path.str());
  return static_cast<unsigned>(files.size() - 1);
}

Error WeightStore::addTensor(TensorInfo info) {
  auto it = tensors.find(info.name);
  if (it != tensors.end())
    return fileError(paths[info.file],
                     "tensor '" + info.name + "' is also defined in " +
                         paths[it->second.file]);
  order.push_back(info.name);
  std::string name = info.name;
  tensors.try_emplace(name, std::move(info));
  return Error::success();
}

const TensorInfo *WeightStore::lookup(StringRef name) const {
  auto it = tensors.find(name);
  if (it != tensors.end())
    return &it->second;
  // Views, made on first lookup (StringMap entries do not move when others
  // are added, so earlier results stay valid): "<stacked>[expert=<k>]",
  // expert k's bytes, and "<name>[rows=<a>:<b>]", rows a to b-1 (outermost
  // dimension). Both need whole rows of whole blocks, which every stored
  // row-major tensor has: GGUF blocks never straddle rows.
  // (At most a few nested views: an expert's rows, say.)
  if (!name.ends_with("]") || name.count('[') > 4)
    return nullptr;
  size_t open = name.rfind('[');
  if (open == StringRef::npos)
    return nullptr;
  StringRef view = name.slice(open + 1, name.size() - 1);
  const TensorInfo *whole = lookup(name.take_front(open));
  if (!whole || whole->shape.empty() || whole->shape[0] <= 0 ||
      whole->bytes % static_cast<uint64_t>(whole->shape[0]) != 0)
    return nullptr;
  uint64_t rows = static_cast<uint64_t>(whole->shape[0]);
  uint64_t rowBytes = whole->bytes / rows;
  TensorInfo part = *whole;
  part.name = name.str();
  if (view.consume_front("expert=")) {
    uint64_t k = 0;
    if (view.getAsInteger(10, k) || k >= rows || whole->shape.size() < 2)
      return nullptr;
    part.shape.erase(part.shape.begin());
    part.bytes = rowBytes;
    part.offset = whole->offset + k * rowBytes;
  } else if (view.consume_front("rows=")) {
    auto [first, last] = view.split(':');
    uint64_t a = 0, b = 0;
    if (first.getAsInteger(10, a) || last.getAsInteger(10, b) || a >= b || b > rows)
      return nullptr;
    part.shape[0] = static_cast<int64_t>(b - a);
    part.bytes = (b - a) * rowBytes;
    part.offset = whole->offset + a * rowBytes;
  } else {
    return nullptr;
  }
  // A view of a derived tensor (tensor parallelism's rows of an importer's
  // per-row scale copy): derived in turn, its bytes copied from the whole's.
  if (whole->derived >= 0) {
    uint64_t from = part.offset - whole->offset;
    part.offset = 0;
    part.derived = static_cast<int>(producers.size());
    producers.push_back([this, source = whole->name, from](MutableArrayRef<uint8_t> out) {
      ArrayRef<uint8_t> bytes = getData(*lookup(source));
      std::memcpy(out.data(), bytes.data() + from, out.size());
    });
    produced.emplace_back();
  }
  return &tensors.insert({name, std::move(part)}).first->second;
}

Error WeightStore::addDerivedTensor(TensorInfo info, TensorProducer produce) {
  info.derived = static_cast<int>(producers.size());
  producers.push_back(std::move(produce));
  produced.emplace_back();
  return addTensor(std::move(info));
}

ArrayRef<uint8_t> WeightStore::getData(const TensorInfo &info) const {
  if (info.derived >= 0) {
    std::vector<uint8_t> &bytes = produced[info.derived];
    if (bytes.size() != info.bytes) {
      bytes.assign(info.bytes, 0);
      producers[info.derived](bytes);
    }
    return bytes;
  }
  StringRef data = files[info.file]->getBuffer();
  return ArrayRef<uint8_t>(
      reinterpret_cast<const uint8_t *>(data.data()) + info.offset, info.bytes);
}

void WeightStore::releaseData(const TensorInfo &info) const {
  if (info.derived >= 0) {
    std::vector<uint8_t>().swap(produced[info.derived]);
    return;
  }
#ifdef LLVM_ON_UNIX
  const MemoryBuffer &file = *files[info.file];
  if (file.getBufferKind() != MemoryBuffer::MemoryBuffer_MMap || info.bytes == 0)
    return;
  auto page = static_cast<uintptr_t>(sys::Process::getPageSizeEstimate());
  auto start = reinterpret_cast<uintptr_t>(file.getBufferStart()) + info.offset;
  uintptr_t first = alignTo(start, page), last = alignDown(start + info.bytes, page);
  // Advice only: where the kernel declines, the pages just stay resident.
  if (first < last)
    (void)::madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
#else
  (void)info;
#endif
}

} // namespace moir::frontend
