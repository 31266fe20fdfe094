// Sessions: KV caches, buffer descriptors and calls of the compiled entry.
#include "model.h"
#include "status.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

using moir::rt::fail;

namespace {

/// A buffer descriptor as the compiled code reads it:
/// {allocated, aligned, offset, sizes[rank], strides[rank]} in 8-byte words.
struct Descriptor {
  std::vector<int64_t> words;
  void set(const void *data, const std::vector<int64_t> &shape) {
    size_t rank = shape.size();
    words.assign(3 + 2 * rank, 0);
    words[0] = reinterpret_cast<int64_t>(data);
    words[1] = reinterpret_cast<int64_t>(data);
    int64_t stride = 1;
    for (size_t i = rank; i-- > 0;) {
      words[3 + i] = shape[i];
      words[3 + rank + i] = stride;
      stride *= shape[i];
    }
  }
};

/// A zero-filled buffer where the driver's code computes (host or device
/// memory).
class Buffer {
public:
  Buffer() = default;
  Buffer(moir::rt::Driver *driver, size_t bytes)
      : driver(driver), data(driver->allocate(bytes)) {}
  Buffer(Buffer &&other) noexcept : driver(other.driver), data(other.data) {
    other.data = nullptr;
  }
  Buffer &operator=(Buffer &&other) noexcept {
    std::swap(driver, other.driver);
    std::swap(data, other.data);
    return *this;
  }
  ~Buffer() {
    if (data)
      driver->release(data);
  }
  void *get() const { return data; }
  explicit operator bool() const { return data != nullptr; }

private:
  moir::rt::Driver *driver = nullptr;
  void *data = nullptr;
};

int64_t elements(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

} // namespace

struct moir_session {
  moir_model *model = nullptr;
  int64_t capacity = 0;
  int64_t position = 0;
  int64_t lastRun = 0;
  int64_t maxRun = 0;
  std::vector<Buffer> caches;
  Buffer tokens, positions, logits;
  /// Host copies where the driver's buffers are device memory.
  std::vector<int64_t> hostPositions;
  std::vector<float> hostLogits;
  int64_t offset = 0;
  /// Whether runs compute every token's logits (the default) or the last
  /// token's only, and the last run's first token with logits (the entry's
  /// logits_from argument, where the artifact has one).
  bool allLogits = true;
  /// Whether the entry takes logits_from (artifacts from before it do not).
  bool takesLogitsFrom = false;
  int64_t logitsFrom = 0;
  /// Rows of logits the last run wrote.
  int64_t logitsRows = 0;
  std::vector<Descriptor> descriptors;
  std::vector<void *> argv;
};

static moir_status reserveRun(moir_session *s, int64_t n) {
  if (n <= s->maxRun)
    return MOIR_OK;
  int64_t vocab = s->model->vocab;
  moir::rt::Driver *driver = s->model->driver;
  // All or nothing: on failure the session keeps its smaller buffers.
  Buffer tokens(driver, n * sizeof(int32_t));
  Buffer positions(driver, n * sizeof(int64_t));
  Buffer logits(driver, n * vocab * sizeof(float));
  if (!tokens || !positions || !logits)
    return fail(MOIR_ERROR_OUT_OF_RANGE, "out of memory for a run of " + std::to_string(n) + " tokens");
  s->tokens = std::move(tokens);
  s->positions = std::move(positions);
  s->logits = std::move(logits);
  s->hostPositions.resize(n);
  if (!driver->hostVisible())
    s->hostLogits.resize(n * vocab);
  s->maxRun = n;
  return MOIR_OK;
}

extern "C" moir_status moir_session_create(moir_model *model, int64_t capacity,
                                           moir_session **out) {
  if (!model || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_session_create: null argument");
  if (capacity < 0 || capacity > model->capacity)
    return fail(MOIR_ERROR_OUT_OF_RANGE,
                model->path + ": session capacity " + std::to_string(capacity) +
                    " exceeds the compiled capacity " + std::to_string(model->capacity));
  if (!model->driver)
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                model->path + ": opened for inspection only (no code loaded)");
  auto s = std::make_unique<moir_session>();
  s->model = model;
  s->capacity = capacity ? capacity : model->capacity;
  s->descriptors.resize(model->args.size());
  s->argv.resize(model->args.size());
  for (size_t i = 0; i < model->args.size(); ++i) {
    const moir::rt::Arg &arg = model->args[i];
    if (arg.kind == "cache") {
      // f32 caches and scales; quantized caches store one byte per value.
      size_t width = arg.dtype == "f32" ? 4 : (arg.dtype == "i8" || arg.dtype == "f8e4m3") ? 1 : 0;
      if (!width)
        return fail(MOIR_ERROR_UNSUPPORTED, model->path + ": cache type " + arg.dtype);
      s->caches.emplace_back(model->driver, elements(arg.shape) * width);
      if (!s->caches.back())
        return fail(MOIR_ERROR_OUT_OF_RANGE, model->path + ": out of memory for the KV cache");
      s->descriptors[i].set(s->caches.back().get(), arg.shape);
    } else if (arg.kind == "weight") {
      s->descriptors[i].set(model->driver->weights() + arg.offset, arg.shape);
    } else if (arg.kind == "logits_from") {
      s->takesLogitsFrom = true;
    }
  }
  if (moir_status st = reserveRun(s.get(), 1); st != MOIR_OK)
    return st;
  *out = s.release();
  return moir::rt::ok();
}

extern "C" void moir_session_destroy(moir_session *s) { delete s; }

extern "C" moir_status moir_session_run(moir_session *s, const int32_t *tokens, int64_t n) {
  if (!s || !tokens || n < 1)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_session_run: needs a session and n >= 1 tokens");
  if (s->position + n > s->capacity)
    return fail(MOIR_ERROR_OUT_OF_RANGE,
                "KV cache capacity " + std::to_string(s->capacity) + " exceeded: position " +
                    std::to_string(s->position) + " + " + std::to_string(n) + " tokens");
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= s->model->vocab)
      return fail(MOIR_ERROR_OUT_OF_RANGE, "token id " + std::to_string(tokens[i]) +
                                               " outside the vocabulary [0, " +
                                               std::to_string(s->model->vocab) + ")");
  if (moir_status st = reserveRun(s, n); st != MOIR_OK)
    return st;
  moir::rt::Driver *driver = s->model->driver;
  for (int64_t i = 0; i < n; ++i)
    s->hostPositions[i] = s->position + i;
  if (moir_status st = driver->upload(s->tokens.get(), tokens, n * sizeof(int32_t)); st != MOIR_OK)
    return st;
  if (moir_status st = driver->upload(s->positions.get(), s->hostPositions.data(),
                                      n * sizeof(int64_t));
      st != MOIR_OK)
    return st;
  s->offset = s->position;
  // Artifacts from before logits_from compute every token's logits.
  const auto &args = s->model->args;
  s->logitsFrom = s->takesLogitsFrom && !s->allLogits ? n - 1 : 0;
  int64_t rows = n - s->logitsFrom;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &kind = args[i].kind;
    if (kind == "tokens")
      s->descriptors[i].set(s->tokens.get(), {n});
    else if (kind == "positions")
      s->descriptors[i].set(s->positions.get(), {n});
    else if (kind == "logits")
      s->descriptors[i].set(s->logits.get(), {rows, s->model->vocab});
    s->argv[i] = kind == "offset"        ? static_cast<void *>(&s->offset)
                 : kind == "logits_from" ? static_cast<void *>(&s->logitsFrom)
                                         : static_cast<void *>(s->descriptors[i].words.data());
  }
  moir::rt::routingBeginForward();
  if (moir_status st = driver->call(s->argv.data()); st != MOIR_OK)
    return st;
  s->logitsRows = rows;
  if (!driver->hostVisible()) {
    size_t bytes = rows * s->model->vocab * sizeof(float);
    if (moir_status st = driver->download(s->hostLogits.data(), s->logits.get(), bytes); st != MOIR_OK)
      return st;
  }
  s->position += n;
  s->lastRun = n;
  return moir::rt::ok();
}

static const float *hostLogits(const moir_session *s) {
  return s->model->driver->hostVisible() ? static_cast<const float *>(s->logits.get())
                                         : s->hostLogits.data();
}

extern "C" const float *moir_session_logits(const moir_session *s) {
  if (!s->lastRun)
    return nullptr;
  return hostLogits(s) + (s->logitsRows - 1) * s->model->vocab;
}

extern "C" const float *moir_session_all_logits(const moir_session *s, int64_t *n) {
  // With every token's logits off, the last token's row only (also from an
  // artifact that computed them all).
  int64_t rows = s->allLogits ? s->logitsRows : std::min<int64_t>(s->logitsRows, 1);
  if (n)
    *n = s->lastRun ? rows : 0;
  if (!s->lastRun)
    return nullptr;
  return hostLogits(s) + (s->logitsRows - rows) * s->model->vocab;
}

extern "C" void moir_session_set_all_logits(moir_session *s, int all) {
  if (s)
    s->allLogits = all != 0;
}

extern "C" int64_t moir_session_position(const moir_session *s) { return s->position; }

extern "C" void moir_session_reset(moir_session *s) {
  s->position = 0;
  s->lastRun = 0;
}
