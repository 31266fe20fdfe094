//===- Artifact.cpp - writing MoIR's compiled-model file -------------------===//

#include "moir/Target/Artifact.h"
#include "moir/Target/ArtifactSigning.h"
#include "moir/Frontend/FloatBits.h"
#include "moir/Frontend/Quantization.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <vector>

using namespace llvm;

namespace moir {

uint64_t fnv1a64(StringRef data, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

static uint64_t align64(uint64_t x) { return (x + 63) & ~uint64_t(63); }

static float toFloat(frontend::DType dtype, const uint8_t *p) {
  uint16_t h;
  switch (dtype) {
  case frontend::DType::F32: {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  case frontend::DType::BF16:
    std::memcpy(&h, p, 2);
    return frontend::fromBF16(h);
  default:
    std::memcpy(&h, p, 2);
    return frontend::fromF16(h);
  }
}

static std::optional<frontend::DType> storedDType(StringRef dtype) {
  if (dtype == "f32") return frontend::DType::F32;
  if (dtype == "f16") return frontend::DType::F16;
  if (dtype == "bf16") return frontend::DType::BF16;
  // Index tensors (act-order GPTQ's input orders), copied as stored.
  if (dtype == "i32") return frontend::DType::I32;
  return std::nullopt;
}

namespace {
/// A quantized weight's part: its packed form, which part, and the logical
/// columns of its matrices.
struct PackedArg {
  frontend::PackedFormat format;
  frontend::PackedPart part;
  int64_t cols;
};

std::optional<PackedArg> parsePacking(const ArtifactArg &arg) {
  auto [form, partName] = StringRef(arg.packing).rsplit('/');
  std::optional<frontend::PackedFormat> format = frontend::parsePackedFormat(form);
  if (!format || arg.shape.size() < 2 || (partName != "data" && partName != "scales"))
    return std::nullopt;
  PackedArg result{*format, partName == "data" ? frontend::PackedPart::Data
                                               : frontend::PackedPart::Scales, 0};
  if (result.part == frontend::PackedPart::Data)
    result.cols = arg.shape.back() * (format->storage == frontend::PackedStorage::U4 ? 2 : 1);
  else
    result.cols = arg.shape[arg.shape.size() - 2] *
                  (format->superblocks ? frontend::PackedFormat::kSuperblock : format->group);
  return result;
}
} // namespace

namespace {

/// `experts resident|paged <offset> <bytes>` lines: the most chosen experts
/// (by the routing profile's counts, across layers) whose weights fit the
/// budget stay resident (the runtime maps them in at load and locks them),
/// the others' bytes are read from the file when a token is routed to them.
/// Prints what it chose to stderr.
template <typename Regions>
void writeResidency(raw_ostream &m, const ArtifactInfo &info, const Regions &regions) {
  std::map<int64_t, std::vector<uint64_t>> loads;
  SmallVector<StringRef> layers;
  StringRef(info.expertLoads).split(layers, ';', -1, /*KeepEmpty=*/false);
  for (StringRef entry : layers) {
    auto [layer, counts] = entry.split('=');
    int64_t k = 0;
    if (layer.trim().getAsInteger(10, k))
      continue;
    SmallVector<StringRef> values;
    counts.split(values, ',');
    for (StringRef v : values) {
      uint64_t c = 0;
      (void)v.trim().getAsInteger(10, c);
      loads[k].push_back(c);
    }
  }
  auto loadOf = [&](int64_t layer, int64_t expert) -> uint64_t {
    auto it = loads.find(layer);
    return it != loads.end() && expert < static_cast<int64_t>(it->second.size())
               ? it->second[expert]
               : 0;
  };
  // Each (layer, expert)'s bytes over its stacks (gate, up, down, packed parts).
  std::map<std::pair<int64_t, int64_t>, uint64_t> bytesOf;
  auto split = [&](const ArtifactArg &arg, size_t i) {
    int64_t n = static_cast<int64_t>(arg.experts.size());
    return arg.kind == "weight" && arg.moeLayer >= 0 && n > 0 && !arg.shape.empty() &&
           arg.shape[0] == n && regions[i].bytes % static_cast<uint64_t>(n) == 0;
  };
  for (auto [i, arg] : llvm::enumerate(info.args))
    if (split(arg, i))
      for (int64_t e : arg.experts)
        bytesOf[{arg.moeLayer, e}] += regions[i].bytes / arg.experts.size();
  std::vector<std::pair<int64_t, int64_t>> order;
  for (const auto &entry : bytesOf)
    order.push_back(entry.first);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) {
    return loadOf(a.first, a.second) > loadOf(b.first, b.second);
  });
  std::set<std::pair<int64_t, int64_t>> resident;
  uint64_t used = 0, all = 0, chosen = 0, total = 0;
  for (auto key : order) {
    all += bytesOf[key];
    total += loadOf(key.first, key.second);
    if (used + bytesOf[key] <= info.residentBudget) {
      used += bytesOf[key];
      chosen += loadOf(key.first, key.second);
      resident.insert(key);
    }
  }
  for (auto [i, arg] : llvm::enumerate(info.args)) {
    if (!split(arg, i))
      continue;
    uint64_t per = regions[i].bytes / arg.experts.size(), start = regions[i].offset;
    for (size_t j = 0; j < arg.experts.size();) {
      bool keep = resident.count({arg.moeLayer, arg.experts[j]});
      size_t end = j;
      while (end < arg.experts.size() && resident.count({arg.moeLayer, arg.experts[end]}) == keep)
        ++end;
      m << "experts " << (keep ? "resident " : "paged ") << start + j * per << " "
        << (end - j) * per << "\n";
      j = end;
    }
  }
  llvm::errs() << "moirc: "
               << (info.ranks > 1 ? "rank " + std::to_string(info.rank) + ": " : std::string())
               << "expert residency: " << resident.size() << " of " << order.size()
               << " experts resident (" << llvm::format("%.1f", used / 1048576.0) << " of "
               << llvm::format("%.1f", all / 1048576.0) << " MiB, budget "
               << llvm::format("%.1f", info.residentBudget / 1048576.0) << "), "
               << llvm::format("%.1f", total ? 100.0 * chosen / total : 0.0)
               << "% of the profile's selections\n";
}

} // namespace

Error writeArtifact(StringRef path, const ArtifactInfo &info, StringRef code,
                    const frontend::WeightStore &store, StringRef signingKey) {
  auto fail = [&](const Twine &message) {
    return createStringError(inconvertibleErrorCode(), path + ": " + message);
  };
  // Lay out the weights: each packed argument 64-byte aligned.
  struct Region {
    uint64_t offset = 0, bytes = 0;
  };
  std::vector<Region> regions(info.args.size());
  uint64_t weightBytes = 0, converted = 0, convertedBytes = 0;
  for (auto [i, arg] : llvm::enumerate(info.args)) {
    if (arg.kind != "weight")
      continue;
    if (!arg.packing.empty()) {
      std::optional<PackedArg> packed = parsePacking(arg);
      if (!packed)
        return fail("weight argument " + Twine(i) + " has a malformed packing '" + arg.packing +
                    "'");
      int64_t elements = 1;
      for (int64_t d : arg.shape)
        elements *= d;
      bool scales = packed->part == frontend::PackedPart::Scales;
      StringRef scaleType = packed->format.superblocks ? "i8"
                            : packed->format.halfScales ? "f16"
                                                        : "f32";
      if (scales && arg.dtype != scaleType)
        return fail("weight argument " + Twine(i) + " (" + arg.packing + ") holds " + arg.dtype +
                    " scales, not the form's");
      uint64_t bytes =
          elements * (scales && !packed->format.superblocks ? packed->format.scaleBytes() : 1);
      weightBytes = align64(weightBytes);
      regions[i] = {weightBytes, bytes};
      weightBytes += bytes;
      continue;
    }
    std::optional<frontend::DType> dtype = storedDType(arg.dtype);
    if (!dtype)
      return fail("weight argument " + Twine(i) + " has unsupported type " + arg.dtype);
    uint64_t bytes = 0;
    for (const std::string &name : arg.names) {
      const frontend::TensorInfo *t = store.lookup(name);
      if (!t)
        return fail("weight '" + name + "' is not in the weight store");
      bool floatStored = t->dtype == frontend::DType::F32 || t->dtype == frontend::DType::F16 ||
                         t->dtype == frontend::DType::BF16;
      if (t->dtype != *dtype && (!floatStored || *dtype == frontend::DType::F16))
        return fail("weight '" + name + "' is " + frontend::stringifyDType(t->dtype) +
                    " but the compiled code expects " + arg.dtype);
      if (t->dtype != *dtype) {
        ++converted;
        convertedBytes += t->bytes;
      }
      bytes += t->getNumElements() * frontend::getBlockBytes(*dtype);
    }
    weightBytes = align64(weightBytes);
    regions[i] = {weightBytes, bytes};
    weightBytes += bytes;
  }

  // Files packed with the model (the tokenizer), after the weights.
  std::vector<Region> resourceRegions;
  for (const auto &resource : info.resources) {
    weightBytes = align64(weightBytes);
    resourceRegions.push_back({weightBytes, resource.second.size()});
    weightBytes += resource.second.size();
  }

  std::string manifest;
  raw_string_ostream m(manifest);
  m << "moir-artifact 1\n";
  m << "target " << info.target << "\n";
  m << "model " << info.family << " vocab " << info.vocab << " layers " << info.layers
    << " capacity " << info.capacity << "\n";
  if (info.ranks > 1)
    m << "parallel " << info.parallelKind << " ranks " << info.ranks << " rank " << info.rank << " group "
      << llvm::format_hex_no_prefix(info.group, 16) << "\n";
  m << "entry moir_forward\n";
  for (const std::string &kernel : info.kernels)
    m << "kernel " << kernel << "\n";
  for (auto [i, arg] : llvm::enumerate(info.args)) {
    m << "arg " << i << " " << arg.kind << " " << arg.dtype << " " << arg.shape.size();
    for (int64_t d : arg.shape)
      m << " " << d;
    if (arg.kind == "weight")
      m << " " << regions[i].offset << " " << regions[i].bytes << " " << join(arg.names, ",");
    m << "\n";
  }
  if (info.residentBudget > 0)
    writeResidency(m, info, regions);

  // What one decode step reads and computes, for rooflines.
  double decodeBytes = 0, decodeFlops = 0;
  for (auto [i, arg] : llvm::enumerate(info.args)) {
    if (arg.kind != "weight")
      continue;
    int64_t elements = 1;
    for (int64_t d : arg.shape)
      elements *= d;
    if (arg.gathered) {
      decodeBytes += static_cast<double>(regions[i].bytes) / arg.shape[0];
      continue;
    }
    decodeBytes += arg.decodeFraction * regions[i].bytes;
    // Matrices multiply each element read once (a multiply and an add).
    if (arg.shape.size() >= 2)
      decodeFlops += 2.0 * arg.decodeFraction * elements;
  }
  m << "decode weight_bytes " << static_cast<uint64_t>(decodeBytes) << " flops "
    << static_cast<uint64_t>(decodeFlops) << "\n";
  for (auto [i, resource] : llvm::enumerate(info.resources))
    m << "resource " << resource.first << " " << resourceRegions[i].offset << " "
      << resourceRegions[i].bytes << "\n";
  // The compiler's work model per component, for the runtime's energy
  // attribution (docs/artifact.md).
  if (!info.costs.empty()) {
    m << "cost_model prefill_prompt " << info.costPrompt << "\n";
    for (const CostComponent &c : info.costs) {
      m << "cost " << c.name
        << format(" decode_flops %.17g %.17g decode_bytes %.17g %.17g prefill_flops %.17g "
                  "prefill_bytes %.17g",
                  c.decodeFlops, c.decodeFlopsPerRow, c.decodeBytes, c.decodeBytesPerRow,
                  c.prefillFlops, c.prefillBytes);
      if (c.experts)
        m << " experts " << c.experts;
      m << "\n";
    }
  }

  // The weights section, streamed from the mapped checkpoint (never held in
  // memory whole, read and converted once): `visit` sees it piece by piece,
  // zero padding included.
  auto visitWeights = [&](function_ref<void(StringRef)> visit) -> Error {
    static const char zeros[64] = {};
    uint64_t at = 0;
    for (auto [i, arg] : llvm::enumerate(info.args)) {
      if (arg.kind != "weight")
        continue;
      visit(StringRef(zeros, regions[i].offset - at));
      at = regions[i].offset;
      if (!arg.packing.empty()) {
        // Converted, repacked or quantized a row block at a time.
        PackedArg packed = *parsePacking(arg);
        uint64_t written = 0;
        if (Error err = frontend::packWeights(store, arg.names, packed.cols, packed.format,
                                              packed.part, [&](StringRef piece) {
                                                written += piece.size();
                                                visit(piece);
                                              }))
          return err;
        if (written != regions[i].bytes)
          return fail("packing " + join(arg.names, ",") + " as " + arg.packing + " wrote " +
                      Twine(written) + " bytes, not " + Twine(regions[i].bytes));
        at += written;
        for (const std::string &name : arg.names)
          store.releaseData(*store.lookup(name));
        continue;
      }
      frontend::DType target = *storedDType(arg.dtype);
      for (const std::string &name : arg.names) {
        const frontend::TensorInfo &t = *store.lookup(name);
        ArrayRef<uint8_t> data = store.getData(t);
        if (t.dtype == target) {
          visit(StringRef(reinterpret_cast<const char *>(data.data()), data.size()));
          at += data.size();
          store.releaseData(t);
          continue;
        }
        // Converted in chunks, never whole.
        int64_t width = frontend::getBlockBytes(t.dtype), n = t.getNumElements();
        std::vector<char> chunk;
        for (int64_t i = 0; i < n; i += 65536) {
          int64_t m = std::min<int64_t>(65536, n - i);
          chunk.resize(m * frontend::getBlockBytes(target));
          for (int64_t j = 0; j < m; ++j) {
            float f = toFloat(t.dtype, data.data() + (i + j) * width);
            if (target == frontend::DType::BF16) {
              uint16_t h = frontend::toBF16(f);
              std::memcpy(&chunk[j * 2], &h, 2);
            } else {
              std::memcpy(&chunk[j * 4], &f, 4);
            }
          }
          visit(StringRef(chunk.data(), chunk.size()));
          at += chunk.size();
        }
        store.releaseData(t);
      }
    }
    for (auto [i, resource] : llvm::enumerate(info.resources)) {
      visit(StringRef(zeros, resourceRegions[i].offset - at));
      visit(resource.second);
      at = resourceRegions[i].offset + resourceRegions[i].bytes;
    }
    return Error::success();
  };
  if (converted)
    errs() << "moirc: warning: converted " << converted << " weight tensors ("
           << format("%.1f", convertedBytes / 1e6)
           << " MB as stored) to the precision the code was compiled for, while packing\n";
  // The weights' checksum is known only once they are written: leave a
  // fixed-width placeholder in the manifest and patch it afterwards.
  m << "checksum code " << format_hex_no_prefix(fnv1a64(code), 16) << " weights ";
  uint64_t weightsHashPos = manifest.size();
  m << format_hex_no_prefix(0, 16) << "\n";

  uint64_t manifestOffset = 64;
  uint64_t codeOffset = align64(manifestOffset + manifest.size());
  // The weights start on a page: their offsets within pages (and so which
  // cache sets and page boundaries a row's bytes meet) do not move with
  // the code's size, so a change to the code is measured on the same
  // weight layout (at 64-byte alignment alone, Mixtral-shaped bf16 decode
  // measured 68.5 and 75.5 tok/s for two code sizes, and 73.0 and 73.4 on
  // pages).
  uint64_t weightsOffset = alignTo(codeOffset + code.size(), 4096);
  // Written to a new file beside `path` and renamed over it only once
  // complete (and signed): a compile that fails, runs out of disk or is
  // killed never leaves a half-written artifact at `path`; the partial file
  // is removed on errors and on fatal signals (SIGKILL aside).
  // A symbolic link is followed: its target is replaced and the link kept.
  // Outputs that are not regular files (a FIFO, a device) are refused: the
  // artifact is patched in place and signed after it is written.
  SmallString<256> target(path);
  sys::fs::file_status existing;
  bool exists = !sys::fs::status(path, existing, /*follow=*/false);
  if (exists && sys::fs::is_symlink_file(existing)) {
    if (std::error_code ec = sys::fs::real_path(path, target))
      return fail("cannot follow the symbolic link: " + ec.message());
    exists = !sys::fs::status(target, existing);
  }
  if (exists && !sys::fs::is_regular_file(existing))
    return fail("not a regular file: artifacts are written to regular files");
  SmallString<256> tmpPath;
  int fd = -1;
  if (std::error_code ec = sys::fs::createUniqueFile(target + ".tmp-%%%%%%", fd, tmpPath))
    return fail("cannot write: " + ec.message());
  // A replaced artifact keeps its permissions.
  if (exists)
    (void)sys::fs::setPermissions(fd, existing.permissions());
  sys::RemoveFileOnSignal(tmpPath);
  bool committed = false;
  auto cleanup = make_scope_exit([&] {
    if (committed)
      return;
    sys::fs::remove(tmpPath);
    sys::DontRemoveFileOnSignal(tmpPath);
  });
  raw_fd_ostream os(fd, /*shouldClose=*/true);
  auto u32 = [&](uint32_t v) { os.write(reinterpret_cast<const char *>(&v), 4); };
  auto u64 = [&](uint64_t v) { os.write(reinterpret_cast<const char *>(&v), 8); };
  auto pad = [&](uint64_t to) {
    while (os.tell() < to)
      os << '\0';
  };
  os.write("MOIRART\0", 8);
  u32(1);
  u32(64);
  u64(manifestOffset);
  u64(manifest.size());
  u64(codeOffset);
  u64(code.size());
  u64(weightsOffset);
  u64(weightBytes);
  pad(manifestOffset);
  os << manifest;
  pad(codeOffset);
  os << code;
  pad(weightsOffset);
  uint64_t weightsHash = 0xcbf29ce484222325ull;
  if (Error err = visitWeights([&](StringRef piece) {
        weightsHash = fnv1a64(piece, weightsHash);
        os << piece;
      })) {
    os.close();
    os.clear_error();
    return err;
  }
  std::string hex;
  raw_string_ostream(hex) << format_hex_no_prefix(weightsHash, 16);
  os.pwrite(hex.data(), hex.size(), manifestOffset + weightsHashPos);
  os.close();
  if (os.has_error()) {
    std::string why = os.error().message();
    os.clear_error();
    return fail("write failed (" + why + "); nothing was written at " + path);
  }
  if (!signingKey.empty())
    if (Error err = signArtifact(tmpPath, signingKey))
      return fail("signing failed (" + toString(std::move(err)) + "); nothing was written at " +
                  path);
  if (std::error_code ec = sys::fs::rename(tmpPath, target))
    return fail("cannot move the finished artifact into place: " + ec.message());
  committed = true;
  sys::DontRemoveFileOnSignal(tmpPath);
  return Error::success();
}

Error writeDequantizedWeights(StringRef path, const ArtifactInfo &info,
                              const frontend::WeightStore &store) {
  auto fail = [&](const Twine &message) {
    return createStringError(inconvertibleErrorCode(), path + ": " + message);
  };
  // (name, shape, values), one tensor at a time into a temporary file of
  // the values; the header is written first, so the values are written
  // twice: once to learn the layout (shapes only), once for real.
  struct Entry {
    std::string name;
    int64_t rows, cols;
  };
  std::vector<Entry> entries;
  std::vector<std::pair<const ArtifactArg *, std::string>> work;
  for (const ArtifactArg &arg : info.args) {
    if (arg.packing.empty() || !StringRef(arg.packing).ends_with("/data"))
      continue;
    PackedArg packed = *parsePacking(arg);
    for (const std::string &name : arg.names) {
      uint64_t bytes = 0;
      if (Error err = frontend::packWeights(store, {name}, packed.cols, packed.format,
                                            frontend::PackedPart::Scales,
                                            [&](StringRef piece) { bytes += piece.size(); }))
        return err;
      int64_t rows = bytes / packed.format.getScaleRowBytes(packed.cols);
      std::string out = name;
      if (StringRef(name).ends_with(".qweight"))
        out = StringRef(name).drop_back(strlen("qweight")).str() + "weight";
      entries.push_back({out, rows, packed.cols});
      work.push_back({&arg, name});
    }
  }
  std::string header;
  raw_string_ostream h(header);
  h << "{";
  uint64_t offset = 0;
  for (auto [i, e] : llvm::enumerate(entries)) {
    uint64_t bytes = static_cast<uint64_t>(e.rows) * e.cols * 4;
    h << (i ? "," : "") << "\"" << e.name << "\":{\"dtype\":\"F32\",\"shape\":[" << e.rows
      << "," << e.cols << "],\"data_offsets\":[" << offset << "," << offset + bytes << "]}";
    offset += bytes;
  }
  h << "}";
  while (header.size() % 8)
    header += ' ';
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  if (ec)
    return fail("cannot write: " + ec.message());
  uint64_t length = header.size();
  os.write(reinterpret_cast<const char *>(&length), 8);
  os << header;
  for (auto [arg, name] : work) {
    PackedArg packed = *parsePacking(*arg);
    std::string data, scales;
    if (Error err = frontend::packWeights(store, {name}, packed.cols, packed.format,
                                          frontend::PackedPart::Data,
                                          [&](StringRef piece) { data += piece; }))
      return err;
    if (Error err = frontend::packWeights(store, {name}, packed.cols, packed.format,
                                          frontend::PackedPart::Scales,
                                          [&](StringRef piece) { scales += piece; }))
      return err;
    int64_t cols = packed.cols, group = packed.format.group;
    int64_t rowBytes = frontend::getPackedRowBytes(packed.format, cols);
    int64_t rows = static_cast<int64_t>(data.size()) / rowBytes;
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      const auto *codes = reinterpret_cast<const uint8_t *>(data.data()) + r * rowBytes;
      const auto *params = reinterpret_cast<const uint8_t *>(scales.data());
      for (int64_t c = 0; c < cols; ++c) {
        float v;
        switch (packed.format.storage) {
        case frontend::PackedStorage::U4: {
          uint8_t byte = codes[(c / 32) * 16 + c % 16];
          v = (c % 32 >= 16) ? (byte >> 4) : (byte & 15);
          break;
        }
        case frontend::PackedStorage::I8:
          v = static_cast<int8_t>(codes[c]);
          break;
        case frontend::PackedStorage::F8E4M3:
          v = frontend::fromFP8E4M3(codes[c]);
          break;
        }
        auto [scale, off] = frontend::readPackedParams(
            packed.format, params + r * packed.format.getScaleRowBytes(cols), c / group);
        row[c] = scale * v + off;
      }
      os.write(reinterpret_cast<const char *>(row.data()), cols * 4);
    }
  }
  if (os.has_error())
    return fail("write failed");
  return Error::success();
}

} // namespace moir
