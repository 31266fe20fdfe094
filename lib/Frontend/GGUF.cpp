//===- GGUF.cpp - llama.cpp's GGUF format reader ---------------------------===//
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata
// count; metadata as (string key, u32 type, value); tensor infos as (string
// name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64
// offset); padding to `general.alignment`; the data. Strings are u64 length +
// bytes.
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/GGUF.h"

#include "llvm/Support/Endian.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <cstring>
#include <iterator>

using namespace llvm;

namespace moir::frontend {

namespace {

enum GGUFType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5,
  FLOAT32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11,
  FLOAT64 = 12,
};

/// Numeric arrays longer than this are counted, not kept.
constexpr uint64_t kMaxKeptArray = 1 << 16;
constexpr uint32_t kMaxDims = 4;

std::optional<DType> fromGGMLType(uint32_t type) {
  switch (type) {
  case 0: return DType::F32;
  case 1: return DType::F16;
  case 2: return DType::Q4_0;
  case 3: return DType::Q4_1;
  case 6: return DType::Q5_0;
  case 7: return DType::Q5_1;
  case 8: return DType::Q8_0;
  case 12: return DType::Q4_K;
  case 13: return DType::Q5_K;
  case 14: return DType::Q6_K;
  case 24: return DType::I8;
  case 26: return DType::I32;
  case 27: return DType::I64;
  case 30: return DType::BF16;
  default: return std::nullopt;
  }
}

/// ggml's names for its tensor types, so a refusal can say which one a file
/// uses (ids 4 and 5 are retired).
StringRef ggmlTypeName(uint32_t type) {
  static const char *const names[] = {
      "F32",    "F16",   "Q4_0",  "Q4_1",    "",      "",      "Q5_0",   "Q5_1",
      "Q8_0",   "Q8_1",  "Q2_K",  "Q3_K",    "Q4_K",  "Q5_K",  "Q6_K",   "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",     "I16",   "I32",   "I64",     "F64",   "IQ1_M", "BF16",   "",
      "",       "",      "TQ1_0", "TQ2_0",   "",      "",      "",       "MXFP4"};
  return type < std::size(names) ? StringRef(names[type]) : StringRef();
}

/// A bounds-checked cursor over the mapped file.
class Reader {
public:
  Reader(StringRef path, StringRef data) : path(path), data(data) {}

  uint64_t offset() const { return pos; }
  uint64_t remaining() const { return data.size() - pos; }

  Error need(uint64_t bytes, const Twine &what) {
    if (bytes > remaining())
      return fileError(path, "truncated at byte " + Twine(pos) + " while reading " +
                                 what + " (" + Twine(bytes) + " bytes needed, " +
                                 Twine(remaining()) + " left)");
    return Error::success();
  }

  template <typename T> Expected<T> read(const Twine &what) {
    if (Error err = need(sizeof(T), what))
      return std::move(err);
    T value = support::endian::read<T, endianness::little>(data.data() + pos);
    pos += sizeof(T);
    return value;
  }

  Expected<StringRef> readString(const Twine &what) {
    Expected<uint64_t> length = read<uint64_t>(what + " length");
    if (!length)
      return length.takeError();
    if (Error err = need(*length, what))
      return std::move(err);
    StringRef s = data.substr(pos, *length);
    pos += *length;
    return s;
  }

  Error skip(uint64_t bytes, const Twine &what) {
    if (Error err = need(bytes, what))
      return err;
    pos += bytes;
    return Error::success();
  }

  StringRef path;

private:
  StringRef data;
  uint64_t pos = 0;
};

uint64_t scalarBytes(uint32_t type) {
  switch (type) {
  case UINT8: case INT8: case BOOL: return 1;
  case UINT16: case INT16: return 2;
  case UINT32: case INT32: case FLOAT32: return 4;
  case UINT64: case INT64: case FLOAT64: return 8;
  default: return 0;
  }
}

Expected<GGUFValue> readScalar(Reader &r, uint32_t type, const Twine &what) {
  GGUFValue v;
  auto unsignedValue = [&](auto value) -> Expected<GGUFValue> {
    if (!value)
      return value.takeError();
    v.kind = GGUFValue::Kind::Unsigned;
    v.u = *value;
    return v;
  };
  auto signedValue = [&](auto value) -> Expected<GGUFValue> {
    if (!value)
      return value.takeError();
    v.kind = GGUFValue::Kind::Signed;
    v.i = *value;
    return v;
  };
  switch (type) {
  case UINT8: return unsignedValue(r.read<uint8_t>(what));
  case UINT16: return unsignedValue(r.read<uint16_t>(what));
  case UINT32: return unsignedValue(r.read<uint32_t>(what));
  case UINT64: return unsignedValue(r.read<uint64_t>(what));
  case INT8: return signedValue(r.read<int8_t>(what));
  case INT16: return signedValue(r.read<int16_t>(what));
  case INT32: return signedValue(r.read<int32_t>(what));
  case INT64: return signedValue(r.read<int64_t>(what));
  case FLOAT32: {
    Expected<uint32_t> bits = r.read<uint32_t>(what);
    if (!bits)
      return bits.takeError();
    float f;
    std::memcpy(&f, &*bits, 4);
    v.kind = GGUFValue::Kind::Float;
    v.f = f;
    return v;
  }
  case FLOAT64: {
    Expected<uint64_t> bits = r.read<uint64_t>(what);
    if (!bits)
      return bits.takeError();
    std::memcpy(&v.f, &*bits, 8);
    v.kind = GGUFValue::Kind::Float;
    return v;
  }
  case BOOL: {
    Expected<uint8_t> byte = r.read<uint8_t>(what);
    if (!byte)
      return byte.takeError();
    if (*byte > 1)
      return fileError(r.path, what + ": bool value " + Twine(*byte) + " is not 0 or 1");
    v.kind = GGUFValue::Kind::Bool;
    v.b = *byte;
    return v;
  }
  case STRING: {
    Expected<StringRef> s = r.readString(what);
    if (!s)
      return s.takeError();
    v.kind = GGUFValue::Kind::String;
    v.s = s->str();
    return v;
  }
  default:
    return fileError(r.path, what + ": unknown value type " + Twine(type));
  }
}

Expected<GGUFValue> readValue(Reader &r, uint32_t type, const Twine &what, bool keepAll) {
  if (type != ARRAY)
    return readScalar(r, type, what);
  Expected<uint32_t> elementType = r.read<uint32_t>(what + " element type");
  if (!elementType)
    return elementType.takeError();
  Expected<uint64_t> count = r.read<uint64_t>(what + " element count");
  if (!count)
    return count.takeError();
  GGUFValue v;
  v.kind = GGUFValue::Kind::Array;
  v.elementType = *elementType;
  v.count = *count;
  if (*elementType == ARRAY)
    return fileError(r.path, what + ": nested arrays are not supported");
  if (*elementType == STRING) {
    // Each string is at least its 8-byte length.
    if (*count > r.remaining() / 8)
      return fileError(r.path, what + ": " + Twine(*count) +
                                   " strings cannot fit in the " +
                                   Twine(r.remaining()) + " bytes left");
    if (keepAll)
      v.strings.reserve(*count);
    for (uint64_t i = 0; i < *count; ++i) {
      Expected<StringRef> s = r.readString(what + " element");
      if (!s)
        return s.takeError();
      if (keepAll)
        v.strings.push_back(s->str());
    }
    return v;
  }
  uint64_t width = scalarBytes(*elementType);
  if (!width)
    return fileError(r.path, what + ": unknown array element type " +
                                 Twine(*elementType));
  if (*count > r.remaining() / width)
    return fileError(r.path, what + ": " + Twine(*count) + " elements of " +
                                 Twine(width) + " bytes run past the end of the file");
  if (*count > kMaxKeptArray && !keepAll) {
    if (Error err = r.skip(*count * width, what))
      return std::move(err);
    return v;
  }
  for (uint64_t i = 0; i < *count; ++i) {
    Expected<GGUFValue> element = readScalar(r, *elementType, what);
    if (!element)
      return element.takeError();
    v.numbers.push_back(*element->getNumber());
  }
  return v;
}

} // namespace

std::optional<int64_t> GGUFValue::getInteger() const {
  switch (kind) {
  case Kind::Unsigned:
    return u <= static_cast<uint64_t>(INT64_MAX) ? std::optional<int64_t>(u)
                                                 : std::nullopt;
  case Kind::Signed: return i;
  case Kind::Bool: return b;
  default: return std::nullopt;
  }
}

std::optional<double> GGUFValue::getNumber() const {
  if (kind == Kind::Float)
    return f;
  if (std::optional<int64_t> v = getInteger())
    return static_cast<double>(*v);
  return std::nullopt;
}

const GGUFValue *GGUFFile::get(StringRef key) const {
  auto it = metadata.find(key);
  return it == metadata.end() ? nullptr : &it->second;
}

Expected<GGUFFile> readGGUF(StringRef path, WeightStore &store) {
  Expected<unsigned> file = store.mapFile(path);
  if (!file)
    return file.takeError();
  return parseGGUF(*file, store);
}

Expected<GGUFFile> parseGGUF(unsigned fileIndex, WeightStore &store) {
  StringRef path = store.getFilePath(fileIndex);
  StringRef data = store.getFileData(fileIndex);
  std::optional<unsigned> file = fileIndex;
  Reader r(path, data);
  GGUFFile result;
  result.path = path.str();

  if (data.size() < 4 || data.substr(0, 4) != "GGUF")
    return fileError(path, "not a GGUF file (bad magic)");
  if (Error err = r.skip(4, "magic"))
    return std::move(err);
  Expected<uint32_t> version = r.read<uint32_t>("version");
  if (!version)
    return version.takeError();
  if (*version != 2 && *version != 3)
    return fileError(path, "unsupported GGUF version " + Twine(*version) +
                               " (supported: 2, 3)");
  result.version = *version;
  Expected<uint64_t> tensorCount = r.read<uint64_t>("tensor count");
  if (!tensorCount)
    return tensorCount.takeError();
  Expected<uint64_t> kvCount = r.read<uint64_t>("metadata count");
  if (!kvCount)
    return kvCount.takeError();
  // A metadata entry takes at least 12 bytes, a tensor info at least 24.
  if (*kvCount > r.remaining() / 12)
    return fileError(path, "metadata count " + Twine(*kvCount) +
                               " cannot fit in the file");
  if (*tensorCount > r.remaining() / 24)
    return fileError(path, "tensor count " + Twine(*tensorCount) +
                               " cannot fit in the file");

  for (uint64_t i = 0; i < *kvCount; ++i) {
    Expected<StringRef> key = r.readString("metadata key");
    if (!key)
      return key.takeError();
    Expected<uint32_t> type = r.read<uint32_t>("type of '" + *key + "'");
    if (!type)
      return type.takeError();
    // The tokenizer's arrays are kept whole (moirc packs the vocabulary).
    Expected<GGUFValue> value =
        readValue(r, *type, "metadata '" + *key + "'", key->starts_with("tokenizer."));
    if (!value)
      return value.takeError();
    if (!result.metadata.try_emplace(*key, std::move(*value)).second)
      return fileError(path, "metadata key '" + *key + "' appears twice");
  }
  if (const GGUFValue *alignment = result.get("general.alignment")) {
    std::optional<int64_t> a = alignment->getInteger();
    if (!a || *a <= 0 || !isPowerOf2_64(*a) || *a > (1 << 20))
      return fileError(path, "general.alignment must be a power of two");
    result.alignment = *a;
  }

  std::vector<TensorInfo> infos;
  std::vector<uint64_t> relativeOffsets;
  for (uint64_t t = 0; t < *tensorCount; ++t) {
    Expected<StringRef> name = r.readString("tensor name");
    if (!name)
      return name.takeError();
    auto where = [&](const Twine &message) {
      return fileError(path, "tensor '" + *name + "': " + message);
    };
    Expected<uint32_t> nDims = r.read<uint32_t>("dimension count of '" + *name + "'");
    if (!nDims)
      return nDims.takeError();
    if (*nDims == 0 || *nDims > kMaxDims)
      return where(Twine(*nDims) + " dimensions (1 to 4 allowed)");
    TensorInfo info;
    info.name = name->str();
    info.file = *file;
    uint64_t elements = 1;
    for (uint32_t d = 0; d < *nDims; ++d) {
      Expected<uint64_t> ne = r.read<uint64_t>("dimensions of '" + *name + "'");
      if (!ne)
        return ne.takeError();
      if (*ne == 0 || *ne > static_cast<uint64_t>(INT64_MAX) / elements)
        return where("dimension " + Twine(*ne) + " is zero or overflows");
      elements *= *ne;
      // GGUF lists dimensions innermost first.
      info.shape.insert(info.shape.begin(), static_cast<int64_t>(*ne));
    }
    Expected<uint32_t> type = r.read<uint32_t>("type of '" + *name + "'");
    if (!type)
      return type.takeError();
    std::optional<DType> dtype = fromGGMLType(*type);
    if (!dtype) {
      StringRef typeName = ggmlTypeName(*type);
      return where((typeName.empty() ? "unknown ggml type " + Twine(*type)
                                     : "ggml type " + typeName + " (" + Twine(*type) + ")") +
                   " cannot be read by MoIR (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
                   "Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, I8, I32, I64)");
    }
    info.dtype = *dtype;
    if (info.shape.back() % getBlockElements(*dtype) != 0)
      return where("innermost dimension " + Twine(info.shape.back()) +
                   " is not a multiple of the " + stringifyDType(*dtype) +
                   " block size " + Twine(getBlockElements(*dtype)));
    std::optional<uint64_t> bytes = getStorageBytes(*dtype, elements);
    if (!bytes)
      return where("size overflows");
    info.bytes = *bytes;
    Expected<uint64_t> offset = r.read<uint64_t>("offset of '" + *name + "'");
    if (!offset)
      return offset.takeError();
    if (*offset % result.alignment != 0)
      return where("offset " + Twine(*offset) + " is not aligned to " +
                   Twine(result.alignment));
    relativeOffsets.push_back(*offset);
    infos.push_back(std::move(info));
  }

  uint64_t dataStart = alignTo(r.offset(), result.alignment);
  if (dataStart > data.size() && !infos.empty())
    return fileError(path, "truncated: the data section would start at byte " +
                               Twine(dataStart) + " past the end (" +
                               Twine(data.size()) + " bytes)");
  uint64_t dataBytes = dataStart <= data.size() ? data.size() - dataStart : 0;
  std::vector<size_t> order(infos.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  for (size_t i = 0; i < infos.size(); ++i) {
    uint64_t begin = relativeOffsets[i];
    if (begin > dataBytes || infos[i].bytes > dataBytes - begin)
      return fileError(path, "tensor '" + infos[i].name + "': bytes [" +
                                 Twine(begin) + ", " + Twine(begin + infos[i].bytes) +
                                 ") run past the end of the data section (" +
                                 Twine(dataBytes) + " bytes; the file may be truncated)");
    infos[i].offset = dataStart + begin;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return infos[a].offset < infos[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo &prev = infos[order[k - 1]], &cur = infos[order[k]];
    if (cur.offset < prev.offset + prev.bytes)
      return fileError(path, "tensors '" + prev.name + "' and '" + cur.name +
                                 "' overlap in the data section");
  }
  for (TensorInfo &info : infos)
    if (Error err = store.addTensor(std::move(info)))
      return std::move(err);
  return result;
}

} // namespace moir::frontend
