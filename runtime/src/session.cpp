// Sessions: KV caches, buffer descriptors and calls of the compiled entry.
#include "model.h"
#include "status.h"

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

struct AlignedFree {
  void operator()(void *p) const { std::free(p); }
};
using Buffer = std::unique_ptr<void, AlignedFree>;

Buffer allocate(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void *p = std::aligned_alloc(64, rounded ? rounded : 64);
  if (p)
    std::memset(p, 0, rounded ? rounded : 64);
  return Buffer(p);
}

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
  int64_t offset = 0;
  std::vector<Descriptor> descriptors;
  std::vector<void *> argv;
};

static moir_status reserveRun(moir_session *s, int64_t n) {
  if (n <= s->maxRun)
    return MOIR_OK;
  int64_t vocab = s->model->vocab;
  s->tokens = allocate(n * sizeof(int32_t));
  s->positions = allocate(n * sizeof(int64_t));
  s->logits = allocate(n * vocab * sizeof(float));
  if (!s->tokens || !s->positions || !s->logits)
    return fail(MOIR_ERROR_OUT_OF_RANGE, "out of memory for a run of " + std::to_string(n) + " tokens");
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
  auto s = std::make_unique<moir_session>();
  s->model = model;
  s->capacity = capacity ? capacity : model->capacity;
  s->descriptors.resize(model->args.size());
  s->argv.resize(model->args.size());
  for (size_t i = 0; i < model->args.size(); ++i) {
    const moir::rt::Arg &arg = model->args[i];
    if (arg.kind == "cache") {
      if (arg.dtype != "f32")
        return fail(MOIR_ERROR_UNSUPPORTED, model->path + ": cache type " + arg.dtype);
      s->caches.push_back(allocate(elements(arg.shape) * sizeof(float)));
      if (!s->caches.back())
        return fail(MOIR_ERROR_OUT_OF_RANGE, model->path + ": out of memory for the KV cache");
      s->descriptors[i].set(s->caches.back().get(), arg.shape);
    } else if (arg.kind == "weight") {
      s->descriptors[i].set(model->weights + arg.offset, arg.shape);
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
  std::memcpy(s->tokens.get(), tokens, n * sizeof(int32_t));
  auto *pos = static_cast<int64_t *>(s->positions.get());
  for (int64_t i = 0; i < n; ++i)
    pos[i] = s->position + i;
  s->offset = s->position;
  const auto &args = s->model->args;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &kind = args[i].kind;
    if (kind == "tokens")
      s->descriptors[i].set(s->tokens.get(), {n});
    else if (kind == "positions")
      s->descriptors[i].set(s->positions.get(), {n});
    else if (kind == "logits")
      s->descriptors[i].set(s->logits.get(), {n, s->model->vocab});
    s->argv[i] = kind == "offset" ? static_cast<void *>(&s->offset)
                                  : static_cast<void *>(s->descriptors[i].words.data());
  }
  s->model->driver->call(s->argv.data());
  s->position += n;
  s->lastRun = n;
  return moir::rt::ok();
}

extern "C" const float *moir_session_logits(const moir_session *s) {
  if (!s->lastRun)
    return nullptr;
  return static_cast<const float *>(s->logits.get()) + (s->lastRun - 1) * s->model->vocab;
}

extern "C" const float *moir_session_all_logits(const moir_session *s, int64_t *n) {
  if (n)
    *n = s->lastRun;
  return s->lastRun ? static_cast<const float *>(s->logits.get()) : nullptr;
}

extern "C" int64_t moir_session_position(const moir_session *s) { return s->position; }

extern "C" void moir_session_reset(moir_session *s) {
  s->position = 0;
  s->lastRun = 0;
}
