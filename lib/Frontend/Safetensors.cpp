//===- Safetensors.cpp - safetensors header reader -------------------------===//
//
// Format: an 8-byte little-endian header length N, N bytes of JSON mapping
// tensor names to {dtype, shape, data_offsets}, then the data. Offsets are
// relative to the end of the header.
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/WeightStore.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/JSON.h"

#include <algorithm>

using namespace llvm;

namespace moir::frontend {

namespace {

/// The safetensors library refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::optional<DType> parseDType(StringRef name) {
  return StringSwitch<std::optional<DType>>(name)
      .Case("F32", DType::F32)
      .Case("F16", DType::F16)
      .Case("BF16", DType::BF16)
      .Case("F8_E4M3", DType::F8E4M3)
      .Case("I8", DType::I8)
      .Case("I32", DType::I32)
      .Case("I64", DType::I64)
      .Default(std::nullopt);
}

/// A JSON integer in [0, limit].
std::optional<int64_t> getNonNegative(const json::Value &value, int64_t limit) {
  std::optional<int64_t> v = value.getAsInteger();
  if (!v || *v < 0 || *v > limit)
    return std::nullopt;
  return v;
}

} // namespace

Error readSafetensors(StringRef path, WeightStore &store) {
  Expected<unsigned> file = store.mapFile(path);
  if (!file)
    return file.takeError();
  return parseSafetensors(*file, store);
}

Error parseSafetensors(unsigned fileIndex, WeightStore &store) {
  StringRef path = store.getFilePath(fileIndex);
  StringRef data = store.getFileData(fileIndex);
  std::optional<unsigned> file = fileIndex;
  if (data.size() < 8)
    return fileError(path, "truncated: " + Twine(data.size()) +
                               " bytes, a safetensors file starts with an "
                               "8-byte header length");
  uint64_t headerBytes = support::endian::read64le(data.data());
  if (headerBytes > data.size() - 8)
    return fileError(path, "header length " + Twine(headerBytes) +
                               " runs past the end of the file (" +
                               Twine(data.size()) + " bytes)");
  if (headerBytes > kMaxHeaderBytes)
    return fileError(path, "header length " + Twine(headerBytes) +
                               " exceeds the 100 MB limit");
  StringRef header = data.substr(8, headerBytes);
  uint64_t dataStart = 8 + headerBytes;
  uint64_t dataBytes = data.size() - dataStart;

  Expected<json::Value> parsed = json::parse(header);
  if (!parsed)
    return fileError(path, "header is not valid JSON: " +
                               toString(parsed.takeError()));
  const json::Object *entries = parsed->getAsObject();
  if (!entries)
    return fileError(path, "header must be a JSON object");

  struct Extent {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Extent> extents;
  std::vector<TensorInfo> infos;
  for (const auto &[key, value] : *entries) {
    std::string name = key.str();
    if (name == "__metadata__") {
      if (!value.getAsObject())
        return fileError(path, "'__metadata__' must be an object");
      continue;
    }
    auto where = [&](const Twine &message) {
      return fileError(path, "tensor '" + name + "': " + message);
    };
    const json::Object *entry = value.getAsObject();
    if (!entry)
      return where("entry must be an object");
    std::optional<StringRef> dtypeName = entry->getString("dtype");
    if (!dtypeName)
      return where("'dtype' must be a string");
    std::optional<DType> dtype = parseDType(*dtypeName);
    if (!dtype)
      return where("unsupported dtype '" + *dtypeName +
                   "' (supported: F32, F16, BF16, F8_E4M3, I8, I32, I64)");
    const json::Array *shape = entry->getArray("shape");
    if (!shape)
      return where("'shape' must be an array");
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    info.file = *file;
    uint64_t elements = 1;
    for (const json::Value &dim : *shape) {
      std::optional<int64_t> d = getNonNegative(dim, INT64_MAX);
      if (!d)
        return where("shape entries must be non-negative integers");
      if (*d != 0 && elements > static_cast<uint64_t>(INT64_MAX) / *d)
        return where("shape has too many elements");
      elements *= *d;
      info.shape.push_back(*d);
    }
    const json::Array *offsets = entry->getArray("data_offsets");
    std::optional<int64_t> begin, end;
    if (offsets && offsets->size() == 2) {
      begin = getNonNegative((*offsets)[0], INT64_MAX);
      end = getNonNegative((*offsets)[1], INT64_MAX);
    }
    if (!begin || !end || *begin > *end)
      return where("'data_offsets' must be [begin, end] with 0 <= begin <= end");
    if (static_cast<uint64_t>(*end) > dataBytes)
      return where("data_offsets [" + Twine(*begin) + ", " + Twine(*end) +
                   "] run past the end of the data (" + Twine(dataBytes) +
                   " bytes; the file may be truncated)");
    std::optional<uint64_t> needed = getStorageBytes(*dtype, elements);
    uint64_t held = *end - *begin;
    if (!needed || *needed != held)
      return where("holds " + Twine(held) + " bytes, but " + *dtypeName +
                   " with " + Twine(elements) + " elements needs " +
                   (needed ? Twine(*needed) : Twine("an impossible count of")) +
                   " bytes");
    info.offset = dataStart + *begin;
    info.bytes = held;
    if (held)
      extents.push_back({static_cast<uint64_t>(*begin),
                         static_cast<uint64_t>(*end), name});
    infos.push_back(std::move(info));
  }

  std::sort(extents.begin(), extents.end(),
            [](const Extent &a, const Extent &b) { return a.begin < b.begin; });
  for (size_t i = 1; i < extents.size(); ++i)
    if (extents[i].begin < extents[i - 1].end)
      return fileError(path, "tensors '" + extents[i - 1].name + "' and '" +
                                 extents[i].name +
                                 "' overlap in the data section");

  // JSON objects are unordered; keep the store's order deterministic.
  std::sort(infos.begin(), infos.end(),
            [](const TensorInfo &a, const TensorInfo &b) { return a.offset < b.offset; });
  for (TensorInfo &info : infos)
    if (Error err = store.addTensor(std::move(info)))
      return err;
  return Error::success();
}

} // namespace moir::frontend
