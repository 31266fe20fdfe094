// Opening artifacts: header, manifest, code checksum, driver.
#include "gpu_driver.h"
#include "moir/comm.h"
#include "model.h"
#include "signature.h"
#include "status.h"
#include "tokenizer.h"

#include <cmath>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <sys/stat.h>

using moir::rt::fail;

namespace {

uint64_t fnv1a64(const uint8_t *data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  for (size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t headerBytes;
  uint64_t manifestOffset, manifestBytes;
  uint64_t codeOffset, codeBytes;
  uint64_t weightsOffset, weightsBytes;
};
static_assert(sizeof(Header) == 64, "the artifact header is 64 bytes");

bool inFile(uint64_t offset, uint64_t bytes, size_t size) {
  return offset <= size && bytes <= size - offset;
}

/// Bounds on what a manifest may declare: any dimension, and the elements
/// of any buffer (so byte sizes computed from them cannot overflow).
constexpr int64_t kMaxDim = int64_t(1) << 40;
constexpr uint64_t kMaxElements = uint64_t(1) << 44;

/// Exactly 16 hex digits.
bool parseHex64(const std::string &text, uint64_t *out) {
  if (text.size() != 16)
    return false;
  uint64_t v = 0;
  for (char c : text) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      return false;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

moir_status parseManifest(moir_model *m, uint64_t *codeChecksum) {
  std::istringstream in(m->manifest);
  std::string line;
  int lineNo = 0;
  auto bad = [&](const std::string &why) {
    return fail(MOIR_ERROR_FORMAT, m->path + ": manifest line " + std::to_string(lineNo) +
                                       ": " + why);
  };
  bool sawEntry = false, sawChecksum = false, sawModel = false;
  while (std::getline(in, line)) {
    ++lineNo;
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (lineNo == 1) {
      int version = 0;
      if (key != "moir-artifact" || !(words >> version) || version != 1)
        return bad("expected 'moir-artifact 1'");
      continue;
    }
    if (key == "target") {
      std::getline(words, m->target);
      if (!m->target.empty() && m->target[0] == ' ')
        m->target.erase(0, 1);
    } else if (key == "model") {
      std::string family, k1, k2, k3;
      if (!(words >> family >> k1 >> m->vocab >> k2 >> m->layers >> k3 >> m->capacity) ||
          k1 != "vocab" || k2 != "layers" || k3 != "capacity" || m->vocab <= 0 ||
          m->vocab > kMaxDim || m->layers < 0 || m->layers > kMaxDim || m->capacity < 1 ||
          m->capacity > kMaxDim)
        return bad("malformed model line");
      sawModel = true;
    } else if (key == "parallel") {
      std::string kind, k1, k2, k3, groupHex;
      if (!(words >> kind >> k1 >> m->ranks >> k2 >> m->rank >> k3 >> groupHex) ||
          (kind != "experts" && kind != "tensor" && kind != "experts+tensor") ||
          k1 != "ranks" || k2 != "rank" || k3 != "group" || m->ranks < 2 || m->ranks > 4096 ||
          m->rank < 0 || m->rank >= m->ranks || !parseHex64(groupHex, &m->parallelGroup))
        return bad("malformed parallel line (expected 'parallel experts|tensor|experts+tensor "
                   "ranks N rank R group <16 hex digits>', 0 <= R < N)");
      m->parallelKind = kind;
    } else if (key == "entry") {
      std::string name;
      words >> name;
      if (name != "moir_forward")
        return bad("unknown entry '" + name + "'");
      sawEntry = true;
    } else if (key == "arg") {
      moir::rt::Arg arg;
      size_t index = 0, rank = 0;
      if (!(words >> index >> arg.kind >> arg.dtype >> rank) || index != m->args.size() || rank > 8)
        return bad("malformed arg line");
      // Dimensions are positive, and bounded so that no buffer size a
      // session computes from them overflows; -1 (the run's tokens) only
      // leads the shapes of tokens, positions and logits.
      bool runSized = arg.kind == "tokens" || arg.kind == "positions" || arg.kind == "logits";
      uint64_t elements = 1;
      for (size_t i = 0; i < rank; ++i) {
        int64_t d = 0;
        if (!(words >> d))
          return bad("arg shape too short");
        if (d == -1 && i == 0 && runSized) {
          arg.shape.push_back(d);
          continue;
        }
        if (d < 1 || d > kMaxDim || elements > kMaxElements / static_cast<uint64_t>(d))
          return bad("arg dimension " + std::to_string(d) + " out of range");
        elements *= static_cast<uint64_t>(d);
        arg.shape.push_back(d);
      }
      if (runSized && (arg.shape.empty() || arg.shape[0] != -1))
        return bad("a " + arg.kind + " arg leads with the run's token dimension -1");
      if (arg.kind == "weight" && !(words >> arg.offset >> arg.bytes >> arg.names))
        return bad("weight arg without its region");
      m->args.push_back(arg);
    } else if (key == "checksum") {
      std::string c, w, codeHex, weightsHex;
      if (!(words >> c >> codeHex >> w >> weightsHex) || c != "code" || w != "weights")
        return bad("malformed checksum line");
      if (!parseHex64(codeHex, codeChecksum) || !parseHex64(weightsHex, &m->weightsChecksum))
        return bad("checksums must be 16 hex digits");
      sawChecksum = true;
    } else if (key == "resource") {
      std::string name;
      uint64_t offset = 0, bytes = 0;
      if (!(words >> name >> offset >> bytes) || !inFile(offset, bytes, m->weightBytes))
        return bad("malformed resource line (or its region lies outside the weights section)");
      m->resources.push_back({name, {offset, bytes}});
    } else if (key == "experts") {
      std::string kind;
      uint64_t offset = 0, bytes = 0;
      if (!(words >> kind >> offset >> bytes) || (kind != "resident" && kind != "paged") ||
          !inFile(offset, bytes, m->weightBytes))
        return bad("malformed experts line (expected 'experts resident|paged OFFSET BYTES' "
                   "inside the weights section)");
      m->residency.push_back({kind == "resident", offset, bytes});
    } else if (key == "kernel") {
      std::string name;
      if (!(words >> name))
        return bad("kernel line without a name");
      m->kernels.push_back(name);
    } else if (key == "decode") {
      std::string b, f;
      if (!(words >> b >> m->decodeWeightBytes >> f >> m->decodeFlops) || b != "weight_bytes" ||
          f != "flops")
        return bad("malformed decode line");
    } else if (key == "cost_model") {
      // The compiler's work model per component, for energy attribution:
      // `cost_model prefill_prompt N`, then one `cost` line per component.
      std::string p;
      if (!(words >> p >> m->costPrompt) || p != "prefill_prompt" || m->costPrompt < 1 ||
          m->costPrompt > kMaxDim)
        return bad("malformed cost_model line");
    } else if (key == "cost") {
      // cost NAME decode_flops F0 F1 decode_bytes B0 B1 prefill_flops PF
      //      prefill_bytes PB [experts N]
      moir::rt::Cost c;
      std::string k1, k2, k3, k4, k5;
      bool ok = static_cast<bool>(words >> c.name >> k1 >> c.decodeFlops >> c.decodeFlopsPerRow >>
                                  k2 >> c.decodeBytes >> c.decodeBytesPerRow >> k3 >>
                                  c.prefillFlops >> k4 >> c.prefillBytes) &&
                k1 == "decode_flops" && k2 == "decode_bytes" && k3 == "prefill_flops" &&
                k4 == "prefill_bytes";
      if (ok && words >> k5)
        ok = k5 == "experts" && words >> c.experts && c.experts >= 1 && c.experts <= kMaxDim &&
             !(words >> k5);
      for (double v : {c.decodeFlops, c.decodeFlopsPerRow, c.decodeBytes, c.decodeBytesPerRow,
                       c.prefillFlops, c.prefillBytes})
        ok = ok && std::isfinite(v) && v >= 0;
      if (!ok)
        return bad("malformed cost line");
      m->costs.push_back(c);
    } else if (!key.empty()) {
      return bad("unknown key '" + key + "'");
    }
  }
  if (!sawEntry || !sawChecksum || !sawModel || m->target.empty())
    return fail(MOIR_ERROR_FORMAT, m->path + ": manifest lacks target, model, entry or checksum");
  if (!m->costs.empty() && m->costPrompt == 0)
    return fail(MOIR_ERROR_FORMAT, m->path + ": cost lines without 'cost_model prefill_prompt N'");
  // The calling convention the compiler emits.
  const auto &a = m->args;
  if (a.size() < 4 || a[0].kind != "tokens" || a[1].kind != "positions" ||
      a[2].kind != "offset" || a.back().kind != "logits")
    return fail(MOIR_ERROR_FORMAT, m->path + ": unexpected entry arguments");
  // The code indexes the caches by position up to the capacity, and writes
  // [tokens, vocab] logits.
  for (const auto &arg : a)
    if (arg.kind == "cache" && (arg.shape.empty() || arg.shape[0] != m->capacity))
      return fail(MOIR_ERROR_FORMAT, m->path + ": a cache argument's rows differ from the "
                                               "capacity " + std::to_string(m->capacity));
  // A run of up to `capacity` tokens writes [tokens, vocab] logits.
  if (static_cast<uint64_t>(m->vocab) > kMaxElements / static_cast<uint64_t>(m->capacity))
    return fail(MOIR_ERROR_FORMAT, m->path + ": capacity x vocabulary is too large");
  if (a.back().shape.size() != 2 || a.back().shape[1] != m->vocab)
    return fail(MOIR_ERROR_FORMAT, m->path + ": the logits are not [tokens, vocab " +
                                       std::to_string(m->vocab) + "]");
  for (const auto &arg : a)
    if (arg.kind == "weight" && !inFile(arg.offset, arg.bytes, m->weightBytes))
      return fail(MOIR_ERROR_FORMAT, m->path + ": weight region of " + arg.names +
                                         " lies outside the weights section");
  return MOIR_OK;
}

/// The drivers this runtime has, chosen by the first word of the artifact's
/// target ("cpu <triple> <cpu>", "nvidia sm_90", "amd gfx942").
struct DriverEntry {
  const char *name;
  const char *what;
  moir_status (*load)(const moir_model &m, const uint8_t *code, size_t bytes,
                      moir::rt::Driver **out);
};

constexpr DriverEntry kDrivers[] = {
    {"cpu", "host code",
     [](const moir_model &m, const uint8_t *code, size_t bytes, moir::rt::Driver **out) {
       return moir::rt::loadCPUDriver(m.path, code, bytes, m.weights, m.weightBytes, m.residency,
                                      out);
     }},
    {"nvidia", "CUDA",
     [](const moir_model &m, const uint8_t *code, size_t bytes, moir::rt::Driver **out) {
       return moir::rt::gpu::loadGPUDriver(moir::rt::gpu::cudaVendor, m.path, m.target, code,
                                           bytes, m.weights, m.weightBytes, out);
     }},
    {"amd", "HIP",
     [](const moir_model &m, const uint8_t *code, size_t bytes, moir::rt::Driver **out) {
       return moir::rt::gpu::loadGPUDriver(moir::rt::gpu::hipVendor, m.path, m.target, code,
                                           bytes, m.weights, m.weightBytes, out);
     }},
};

const DriverEntry *findDriver(const std::string &target) {
  std::string name = target.substr(0, target.find(' '));
  for (const DriverEntry &entry : kDrivers)
    if (name == entry.name)
      return &entry;
  return nullptr;
}

/// "cpu (host code), nvidia (CUDA), amd (HIP)": for errors.
std::string knownDrivers() {
  std::string list;
  for (const DriverEntry &entry : kDrivers)
    list += std::string(list.empty() ? "" : ", ") + entry.name + " (" + entry.what + ")";
  return list;
}

} // namespace

/// A parallel artifact's ranks all run it: checks that this process is the
/// rank the artifact was compiled for, in a job of the right size, and that
/// every rank opened an artifact of the same compile. Every rank makes the
/// same collective calls whatever it finds, so a mismatch fails on all of
/// them instead of leaving some waiting.
static moir_status joinRanks(const moir_model &m) {
  moir_comm *world = nullptr;
  if (moir_status s = moir_comm_world(&world); s != MOIR_OK)
    return fail(s, m.path + ": rank " + std::to_string(m.rank) + " of a " +
                       std::to_string(m.ranks) + "-rank artifact needs the job's communicator: " +
                       moir_last_error());
  int size = moir_comm_size(world), rank = moir_comm_rank(world);
  if (size != m.ranks)
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                m.path + ": compiled for " + std::to_string(m.ranks) + " ranks (moirc " +
                    m.parallelFlags() + "), but the job has " +
                    std::to_string(size) + (size == 1 ? " (start it with mpirun -np " +
                                                            std::to_string(m.ranks) + ")"
                                                      : ""));
  if (moir_status s = moir_comm_check_agree(world, "compile of the artifacts (parallel group)",
                                            m.parallelGroup);
      s != MOIR_OK)
    return fail(s, m.path + ": the ranks opened artifacts of different compiles: " +
                       moir_last_error());
  if (moir_status s = moir_comm_check_agree(world, "artifact rank = process rank",
                                            m.rank == rank ? 1 : 0);
      s != MOIR_OK || m.rank != rank)
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                m.path + ": " + (m.rank != rank ? "this is rank " + std::to_string(m.rank) +
                                                      "'s artifact, opened by rank " +
                                                      std::to_string(rank)
                                                : std::string("another rank opened an artifact of "
                                                              "the wrong rank")) +
                    " (give every rank the directory moirc wrote: each opens rank<r>.moir)");
  return moir::rt::ok();
}

/// A directory from moirc --expert-parallel holds rank<r>.moir per rank:
/// this process's (the job's rank; rank 0's when only inspecting).
static moir_status resolveRankPath(const char *path, bool loadCode, std::string *resolved) {
  *resolved = path;
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return moir::rt::ok();
  int rank = 0;
  if (loadCode) {
    moir_comm *world = nullptr;
    if (moir_status s = moir_comm_world(&world); s != MOIR_OK)
      return fail(s, std::string(path) + ": a directory of per-rank artifacts, but the job's "
                                         "communicator failed: " + moir_last_error());
    rank = moir_comm_rank(world);
  }
  *resolved = std::string(path) + "/rank" + std::to_string(rank) + ".moir";
  if (stat(resolved->c_str(), &st) != 0)
    return fail(MOIR_ERROR_IO, std::string(path) + ": a directory without " + resolved->substr(std::string(path).size() + 1) +
                                   " (not an artifact directory of moirc --expert-parallel, or "
                                   "more ranks than it was compiled for)");
  return moir::rt::ok();
}

static moir_status openModel(const char *path, bool loadCode, const char *trustedKeys,
                             moir_model **out) {
  if (!path || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                trustedKeys ? "moir_model_open_trusted: null argument"
                            : "moir_model_open: null argument");
  *out = nullptr;
  std::string filePath;
  if (moir_status s = resolveRankPath(path, loadCode, &filePath); s != MOIR_OK)
    return s;
  path = filePath.c_str();
  auto *m = new moir_model;
  m->path = path;
  auto reject = [&](moir_status s) {
    moir_model_close(m);
    return s;
  };
  if (moir_status s = moir_map_file(path, &m->file); s != MOIR_OK)
    return reject(s);
  // `base` is where the header, manifest and code are read: the mapped file,
  // or with trusted keys a private copy of everything before the weights,
  // made before the signature is checked and checked itself (a mapping shows
  // later writes to the file: what is loaded must be what was verified). The
  // weights are used where they lie in the mapping; only the signed bytes are
  // the artifact.
  size_t size = m->file.size;
  const uint8_t *base = m->file.data;
  std::vector<uint8_t> verified;
  if (trustedKeys) {
    Header first;
    size_t prefix = size;
    if (size >= sizeof first) {
      std::memcpy(&first, m->file.data, sizeof first);
      prefix = std::min<uint64_t>(first.weightsOffset, size);
    }
    verified.assign(m->file.data, m->file.data + prefix);
    if (moir_status s = moir::rt::verifySignature(m->path, m->file.data, m->file.size,
                                                  verified, trustedKeys, &size);
        s != MOIR_OK)
      return reject(s);
    base = verified.data();
  }
  Header h;
  if (size < sizeof h || (trustedKeys && verified.size() < sizeof h))
    return reject(fail(MOIR_ERROR_FORMAT, m->path + ": truncated (no artifact header)"));
  std::memcpy(&h, base, sizeof h);
  // The signed header must place the weights where the private copy ends.
  if (trustedKeys && h.weightsOffset != verified.size())
    return reject(fail(MOIR_ERROR_FORMAT, m->path + ": the file changed while it was opened"));
  if (std::memcmp(h.magic, "MOIRART\0", 8) != 0)
    return reject(fail(MOIR_ERROR_FORMAT, m->path + ": not a MoIR artifact"));
  if (h.version != 1)
    return reject(fail(MOIR_ERROR_UNSUPPORTED, m->path + ": artifact version " +
                                                   std::to_string(h.version) +
                                                   " (this runtime reads 1)"));
  if (h.headerBytes != sizeof h)
    return reject(fail(MOIR_ERROR_FORMAT, m->path + ": header size " +
                                              std::to_string(h.headerBytes) + " (expected 64)"));
  if (!inFile(h.manifestOffset, h.manifestBytes, size) || !inFile(h.codeOffset, h.codeBytes, size) ||
      !inFile(h.weightsOffset, h.weightsBytes, size) || h.weightsOffset % 64 != 0)
    return reject(fail(MOIR_ERROR_FORMAT, m->path + ": sections lie outside the file (truncated?)"));
  // In order, not overlapping: header, manifest, code, weights.
  if (h.manifestOffset < sizeof h || h.codeOffset < h.manifestOffset + h.manifestBytes ||
      h.weightsOffset < h.codeOffset + h.codeBytes)
    return reject(fail(MOIR_ERROR_FORMAT, m->path + ": sections overlap (corrupted header)"));
  m->manifest.assign(reinterpret_cast<const char *>(base + h.manifestOffset), h.manifestBytes);
  m->weights = m->file.data + h.weightsOffset;
  m->weightBytes = h.weightsBytes;
  uint64_t codeChecksum = 0;
  if (moir_status s = parseManifest(m, &codeChecksum); s != MOIR_OK)
    return reject(s);
  const uint8_t *code = base + h.codeOffset;
  if (fnv1a64(code, h.codeBytes) != codeChecksum)
    return reject(fail(MOIR_ERROR_FORMAT, m->path + ": code checksum mismatch (corrupted file)"));
  if (!loadCode) {
    *out = m;
    return moir::rt::ok();
  }
  const DriverEntry *driver = findDriver(m->target);
  if (!driver)
    return reject(fail(MOIR_ERROR_UNSUPPORTED, m->path + ": target '" + m->target +
                                                   "' has no driver in this runtime (known: " +
                                                   knownDrivers() + ")"));
  if (m->ranks > 1)
    if (moir_status s = joinRanks(*m); s != MOIR_OK)
      return reject(s);
  moir_status loaded = driver->load(*m, code, h.codeBytes, &m->driver);
  if (loaded != MOIR_OK)
    return reject(loaded);
  *out = m;
  return moir::rt::ok();
}

extern "C" moir_status moir_model_open(const char *path, moir_model **out) {
  // An operator can require signed artifacts of every program on the runtime.
  const char *keys = std::getenv("MOIR_TRUSTED_KEYS");
  return openModel(path, /*loadCode=*/true, keys && *keys ? keys : nullptr, out);
}

extern "C" moir_status moir_model_open_trusted(const char *path, const char *trustedKeys,
                                               moir_model **out) {
  if (!trustedKeys)
    return moir_model_open(path, out);
  return openModel(path, /*loadCode=*/true, trustedKeys, out);
}

extern "C" moir_status moir_model_open_for_inspection(const char *path, moir_model **out) {
  return openModel(path, /*loadCode=*/false, nullptr, out);
}

extern "C" moir_status moir_model_parallel(const moir_model *m, int *rank, int *ranks) {
  if (!m || !rank || !ranks)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_model_parallel: null argument");
  *rank = static_cast<int>(m->rank);
  *ranks = static_cast<int>(m->ranks);
  return moir::rt::ok();
}

extern "C" void moir_model_close(moir_model *m) {
  if (!m)
    return;
  delete m->driver;
  moir_unmap_file(&m->file);
  delete m;
}

extern "C" const char *moir_model_manifest(const moir_model *m) { return m->manifest.c_str(); }
extern "C" int64_t moir_model_vocab_size(const moir_model *m) { return m->vocab; }
extern "C" int64_t moir_model_capacity(const moir_model *m) { return m->capacity; }
extern "C" uint64_t moir_model_weight_bytes(const moir_model *m) { return m->weightBytes; }
extern "C" uint64_t moir_model_decode_weight_bytes(const moir_model *m) {
  return m->decodeWeightBytes;
}
extern "C" uint64_t moir_model_decode_flops(const moir_model *m) { return m->decodeFlops; }

extern "C" moir_status moir_model_verify_weights(const moir_model *m) {
  if (fnv1a64(m->weights, m->weightBytes) != m->weightsChecksum)
    return fail(MOIR_ERROR_FORMAT, m->path + ": weights checksum mismatch (corrupted file)");
  return moir::rt::ok();
}

bool moir::rt::findResource(const moir_model *m, const std::string &name, const char **data,
                            size_t *bytes) {
  for (const auto &[resource, region] : m->resources)
    if (resource == name) {
      *data = reinterpret_cast<const char *>(m->weights + region.first);
      *bytes = region.second;
      return true;
    }
  return false;
}

extern "C" moir_status moir_model_tokenizer(const moir_model *m, moir_tokenizer **out) {
  if (!m || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_model_tokenizer: null argument");
  *out = nullptr;
  const char *json = nullptr, *config = nullptr;
  size_t bytes = 0, configBytes = 0;
  if (moir::rt::findResource(m, "tokenizer.json", &json, &bytes)) {
    moir_tokenizer *t = nullptr;
    if (moir_status s = moir_tokenizer_open_memory((m->path + ":tokenizer.json").c_str(), json,
                                                   bytes, &t);
        s != MOIR_OK)
      return s;
    if (moir_tokenizer_vocab_size(t) > m->vocab) {
      int64_t n = moir_tokenizer_vocab_size(t);
      moir_tokenizer_close(t);
      return fail(MOIR_ERROR_FORMAT, m->path + ": its tokenizer has " + std::to_string(n) +
                                         " token ids, the model's vocabulary " +
                                         std::to_string(m->vocab));
    }
    // The BOS/EOS and stop tokens moirc kept beside it.
    if (moir::rt::findResource(m, "tokenizer_config.json", &config, &configBytes))
      if (moir_status s = moirTokenizerConfigure(t, m->path + ":tokenizer_config.json", config,
                                                 configBytes);
          s != MOIR_OK) {
        moir_tokenizer_close(t);
        return s;
      }
    *out = t;
    return moir::rt::ok();
  }
  return fail(MOIR_ERROR_UNSUPPORTED,
              m->path + ": the artifact holds no tokenizer (compile from a folder with "
                        "tokenizer.json, or give moirc --tokenizer=FILE)");
}
