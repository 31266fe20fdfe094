//===- _moir.cpp - the moir package's extension over the runtime's C API ---===//
//
// Thin classes over moir/runtime.h (models, sessions, sampling, tokenizers,
// text streams, chat templates); the Python API (moir/_model.py) is built on
// them. Every failing moir_status raises the Python exception registered
// for it (moir/_errors.py) with moir_last_error()'s message, prefixed with
// the artifact's path where the runtime's message does not name it (session
// and sampling errors). Sessions run with the GIL released.
//
//===----------------------------------------------------------------------===//

#include "moir/runtime.h"

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <dlfcn.h>

#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nb = nanobind;

namespace {

/// The exception type raised for each moir_status, indexed by its value;
/// set once by moir/_errors.py (register_error_types).
PyObject *errorTypes[MOIR_ERROR_UNTRUSTED + 1] = {};

[[noreturn]] void raise(moir_status status, std::string message) {
  PyObject *type = status > MOIR_OK && status <= MOIR_ERROR_UNTRUSTED && errorTypes[status]
                       ? errorTypes[status]
                       : PyExc_RuntimeError;
  PyErr_SetString(type, message.c_str());
  throw nb::python_error();
}

/// Raises for a failed runtime call: its last error, naming `file` when the
/// runtime's message does not.
[[noreturn]] void raiseLast(moir_status status, const std::string &file) {
  std::string message = moir_last_error();
  if (message.empty())
    message = moir_status_name(status);
  if (!file.empty() && message.find(file) == std::string::npos)
    message = file + ": " + message;
  raise(status, message);
}

/// UTF-8 bytes as str; bytes that are not UTF-8 (a byte-level token can
/// hold part of a character) become U+FFFD.
nb::str text(const char *bytes, size_t n) {
  PyObject *s = PyUnicode_DecodeUTF8(bytes, static_cast<Py_ssize_t>(n), "replace");
  if (!s)
    throw nb::python_error();
  return nb::steal<nb::str>(s);
}

/// Token ids from Python ints, each checked to be an int32 (the runtime
/// checks them against the vocabulary).
std::vector<int32_t> toIds(const std::vector<int64_t> &ids, const std::string &file) {
  std::vector<int32_t> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] > std::numeric_limits<int32_t>::max())
      raise(MOIR_ERROR_OUT_OF_RANGE,
            file + ": token id " + std::to_string(ids[i]) + " is not a token id (0 to 2^31 - 1)");
    out[i] = static_cast<int32_t>(ids[i]);
  }
  return out;
}

/// An open artifact; sessions and tokenizers hold it, so it stays open until
/// the last of them and the Model are gone.
struct ModelHandle {
  ModelHandle(moir_model *model, std::string path) : model(model), path(std::move(path)) {}
  ~ModelHandle() { moir_model_close(model); }
  ModelHandle(const ModelHandle &) = delete;
  ModelHandle &operator=(const ModelHandle &) = delete;
  moir_model *model;
  std::string path;
};
using ModelRef = std::shared_ptr<ModelHandle>;

/// A tokenizer: the one an artifact carries (holding the model) or one read
/// from a tokenizer.json; `file` names it in errors.
struct TokenizerHandle {
  TokenizerHandle(ModelRef model, moir_tokenizer *tokenizer, std::string file)
      : model(std::move(model)), tokenizer(tokenizer), file(std::move(file)) {}
  ~TokenizerHandle() { moir_tokenizer_close(tokenizer); }
  TokenizerHandle(const TokenizerHandle &) = delete;
  TokenizerHandle &operator=(const TokenizerHandle &) = delete;
  ModelRef model;
  moir_tokenizer *tokenizer;
  std::string file;
};
using TokenizerRef = std::shared_ptr<TokenizerHandle>;

/// Decodes generated ids into text that ends on character boundaries.
class TextStream {
public:
  TextStream(TokenizerRef tokenizer, bool skipSpecial) : tokenizer(std::move(tokenizer)) {
    if (moir_status st = moir_text_stream_create(this->tokenizer->tokenizer, skipSpecial, &stream);
        st != MOIR_OK)
      raiseLast(st, this->tokenizer->file);
  }
  ~TextStream() { moir_text_stream_destroy(stream); }
  TextStream(const TextStream &) = delete;
  TextStream &operator=(const TextStream &) = delete;

  /// The text that `id` completes ("" while a character is still partial).
  nb::str push(int64_t id) {
    const std::string &file = tokenizer->file;
    int32_t token = toIds({id}, file)[0];
    const char *piece = nullptr;
    size_t bytes = 0;
    if (moir_status st = moir_text_stream_push(stream, token, &piece, &bytes); st != MOIR_OK)
      raiseLast(st, file);
    return text(piece, bytes);
  }
  /// What is held back (the bytes of an unfinished character).
  nb::str finish() {
    const char *piece = nullptr;
    size_t bytes = 0;
    moir_text_stream_finish(stream, &piece, &bytes);
    return text(piece, bytes);
  }

private:
  TokenizerRef tokenizer;
  moir_text_stream *stream = nullptr;
};

class Tokenizer {
public:
  explicit Tokenizer(TokenizerRef handle) : handle(std::move(handle)) {}

  std::vector<int32_t> encode(const nb::str &input, bool addSpecial) const {
    Py_ssize_t length = 0;
    const char *utf8 = PyUnicode_AsUTF8AndSize(input.ptr(), &length);
    if (!utf8)
      throw nb::python_error();
    // A byte-level BPE token spans at least one byte; the retry covers
    // tokenizers where that does not hold.
    std::vector<int32_t> ids(static_cast<size_t>(length) + 16);
    size_t count = 0;
    moir_status st;
    {
      nb::gil_scoped_release release;
      st = moir_tokenize_special(handle->tokenizer, utf8, length, addSpecial, ids.data(),
                                 ids.size(), &count);
      if (st == MOIR_ERROR_OUT_OF_RANGE && count > ids.size()) {
        ids.resize(count);
        st = moir_tokenize_special(handle->tokenizer, utf8, length, addSpecial, ids.data(),
                                   ids.size(), &count);
      }
    }
    if (st != MOIR_OK)
      raiseLast(st, handle->file);
    ids.resize(count);
    return ids;
  }

  nb::str decode(const std::vector<int64_t> &input, bool skipSpecial) const {
    std::vector<int32_t> ids = toIds(input, handle->file);
    std::string out(ids.size() * 8 + 16, '\0');
    size_t bytes = 0;
    moir_status st = moir_detokenize(handle->tokenizer, ids.data(), ids.size(), skipSpecial,
                                     out.data(), out.size(), &bytes);
    if (st == MOIR_ERROR_OUT_OF_RANGE && bytes > out.size()) {
      out.resize(bytes);
      st = moir_detokenize(handle->tokenizer, ids.data(), ids.size(), skipSpecial, out.data(),
                           out.size(), &bytes);
    }
    if (st != MOIR_OK)
      raiseLast(st, handle->file);
    return text(out.data(), bytes);
  }

  int64_t vocabSize() const { return moir_tokenizer_vocab_size(handle->tokenizer); }

  /// BOS and EOS ids, or None where the tokenizer names none.
  std::optional<int32_t> bosId() const { return known(moir_tokenizer_bos_id(handle->tokenizer)); }
  std::optional<int32_t> eosId() const { return known(moir_tokenizer_eos_id(handle->tokenizer)); }
  std::vector<int32_t> stopIds() const {
    std::vector<int32_t> ids(moir_tokenizer_stop_ids(handle->tokenizer, nullptr, 0));
    ids.resize(moir_tokenizer_stop_ids(handle->tokenizer, ids.data(), ids.size()));
    return ids;
  }
  /// A token's stored text (an added token's content), or None outside the
  /// vocabulary.
  std::optional<std::string> token(int64_t id) const {
    size_t bytes = 0;
    const char *text = moir_tokenizer_token(handle->tokenizer, toIds({id}, handle->file)[0], &bytes);
    return text ? std::optional<std::string>(std::string(text, bytes)) : std::nullopt;
  }
  bool isSpecial(int64_t id) const {
    return moir_tokenizer_is_special(handle->tokenizer, toIds({id}, handle->file)[0]);
  }

  TextStream *stream(bool skipSpecial) const { return new TextStream(handle, skipSpecial); }

  /// A tokenizer.json read on its own.
  static Tokenizer *open(const std::string &path) {
    moir_tokenizer *tokenizer = nullptr;
    moir_status st;
    {
      nb::gil_scoped_release release;
      st = moir_tokenizer_open(path.c_str(), &tokenizer);
    }
    if (st != MOIR_OK)
      raiseLast(st, path);
    return new Tokenizer(std::make_shared<TokenizerHandle>(nullptr, tokenizer, path));
  }

private:
  static std::optional<int32_t> known(int32_t id) {
    return id < 0 ? std::nullopt : std::optional<int32_t>(id);
  }
  TokenizerRef handle;
};

/// A Hugging Face chat template (Jinja2): the artifact's, or one parsed
/// from its source.
class ChatTemplate {
public:
  using Message = std::pair<std::string, std::optional<std::string>>;

  ChatTemplate(ModelRef model, moir_chat_template *t, std::string file)
      : model(std::move(model)), t(t), file(std::move(file)) {}
  ~ChatTemplate() { moir_chat_template_close(t); }
  ChatTemplate(const ChatTemplate &) = delete;
  ChatTemplate &operator=(const ChatTemplate &) = delete;

  static ChatTemplate *open(const std::string &name, const std::string &source) {
    moir_chat_template *t = nullptr;
    if (moir_status st = moir_chat_template_open(name.c_str(), source.data(), source.size(), &t);
        st != MOIR_OK)
      raiseLast(st, name);
    return new ChatTemplate(nullptr, t, name);
  }

  /// The text of (role, content) messages; content None is None in the
  /// template, as bos/eos None are undefined.
  nb::str render(const std::vector<Message> &messages, bool addGenerationPrompt,
                 const std::optional<std::string> &bos,
                 const std::optional<std::string> &eos) const {
    std::vector<moir_chat_message> list(messages.size());
    for (size_t i = 0; i < messages.size(); ++i)
      list[i] = {messages[i].first.c_str(),
                 messages[i].second ? messages[i].second->c_str() : nullptr};
    std::string out(4096, '\0');
    size_t bytes = 0;
    moir_status st;
    {
      nb::gil_scoped_release release;
      auto render = [&] {
        return moir_chat_template_render(t, list.data(), list.size(), addGenerationPrompt,
                                         bos ? bos->c_str() : nullptr,
                                         eos ? eos->c_str() : nullptr, out.data(), out.size(),
                                         &bytes);
      };
      st = render();
      if (st == MOIR_ERROR_OUT_OF_RANGE && bytes > out.size()) {
        out.resize(bytes);
        st = render();
      }
    }
    if (st != MOIR_OK)
      raiseLast(st, file);
    return text(out.data(), bytes);
  }

private:
  ModelRef model;
  moir_chat_template *t;
  std::string file;
};

using Logits = nb::ndarray<nb::numpy, float, nb::ndim<2>, nb::c_contig>;

/// A copy of `rows` x `vocab` logits that Python owns.
Logits copyLogits(const float *logits, int64_t rows, int64_t vocab) {
  size_t count = static_cast<size_t>(rows * vocab);
  float *copy = new float[count ? count : 1];
  if (count)
    std::memcpy(copy, logits, count * sizeof(float));
  nb::capsule owner(copy, [](void *p) noexcept { delete[] static_cast<float *>(p); });
  return Logits(copy, {static_cast<size_t>(rows), static_cast<size_t>(vocab)}, owner);
}

/// A generation session (its own KV cache). Runs are serialized by a mutex:
/// the runtime's sessions are not thread-safe, and they run without the GIL.
class Session {
public:
  Session(ModelRef model, int64_t capacity) : model(std::move(model)) {
    if (moir_status st = moir_session_create(this->model->model, capacity, &session);
        st != MOIR_OK)
      raiseLast(st, this->model->path);
    this->capacity = capacity ? capacity : moir_model_capacity(this->model->model);
  }
  ~Session() { moir_session_destroy(session); }
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  /// Runs `tokens` at the current position; with `logits`, returns theirs
  /// ([n, vocab], a copy); without, computes the last token's only (what
  /// sampling reads: a prefill skips the LM head for the others).
  nb::object run(const std::vector<int64_t> &tokens, bool logits) {
    if (tokens.empty())
      raise(MOIR_ERROR_INVALID_ARGUMENT, model->path + ": no tokens to run");
    std::vector<int32_t> ids = toIds(tokens, model->path);
    moir_status st;
    {
      nb::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(busy);
      moir_session_set_all_logits(session, logits ? 1 : 0);
      st = moir_session_run(session, ids.data(), static_cast<int64_t>(ids.size()));
    }
    if (st != MOIR_OK)
      raiseLast(st, model->path);
    return logits ? nb::cast(lastLogits()) : nb::none();
  }

  /// Logits of every token of the last run ([n, vocab]; [0, vocab] before
  /// the first run or after reset).
  Logits lastLogits() {
    std::lock_guard<std::mutex> lock(busy);
    int64_t vocab = moir_model_vocab_size(model->model), rows = 0;
    const float *all = moir_session_all_logits(session, &rows);
    if (!all || position() == 0)
      rows = 0;
    return copyLogits(all, rows, vocab);
  }

  /// The next token from the last run's last logits.
  int32_t sample(const moir_sampling &params, uint64_t *state) {
    std::lock_guard<std::mutex> lock(busy);
    const float *logits = moir_session_logits(session);
    if (!logits || moir_session_position(session) == 0)
      raise(MOIR_ERROR_INVALID_ARGUMENT, model->path + ": the session has run no tokens to sample from");
    int32_t token = 0;
    if (moir_status st = moir_sample(logits, moir_model_vocab_size(model->model), &params, state,
                                     &token);
        st != MOIR_OK)
      raiseLast(st, model->path);
    return token;
  }

  int64_t position() const { return moir_session_position(session); }
  int64_t sessionCapacity() const { return capacity; }
  void reset() {
    std::lock_guard<std::mutex> lock(busy);
    moir_session_reset(session);
  }

private:
  ModelRef model;
  moir_session *session = nullptr;
  int64_t capacity = 0;
  std::mutex busy;
};

/// Sampling parameters and the generator's state (moir_sample).
class Sampler {
public:
  Sampler(float temperature, int32_t topK, float topP, uint64_t seed)
      : params{temperature, topK, topP, seed} {
    moir_sampling_init(&params, &state);
  }
  int32_t sample(Session &session) { return session.sample(params, &state); }

private:
  moir_sampling params;
  uint64_t state = 0;
};

class Model {
public:
  Model(const std::string &path, const std::optional<std::string> &trustedKeys) {
    moir_model *model = nullptr;
    moir_status st;
    {
      // Opening maps the file and loads the code; with trusted keys it reads
      // every byte.
      nb::gil_scoped_release release;
      st = moir_model_open_trusted(path.c_str(), trustedKeys ? trustedKeys->c_str() : nullptr,
                                   &model);
    }
    if (st != MOIR_OK)
      raiseLast(st, path);
    handle = std::make_shared<ModelHandle>(model, path);
  }

  void close() { handle.reset(); }
  bool closed() const { return !handle; }
  const ModelRef &get() const {
    if (!handle)
      throw nb::value_error("the model is closed");
    return handle;
  }

  int64_t vocabSize() const { return moir_model_vocab_size(get()->model); }
  int64_t capacity() const { return moir_model_capacity(get()->model); }
  std::string manifest() const { return moir_model_manifest(get()->model); }
  uint64_t weightBytes() const { return moir_model_weight_bytes(get()->model); }
  /// (rank, ranks) of an expert-parallel artifact; (0, 1) otherwise.
  std::pair<int, int> parallel() const {
    int rank = 0, ranks = 1;
    moir_model_parallel(get()->model, &rank, &ranks);
    return {rank, ranks};
  }

  Tokenizer *tokenizer() const {
    moir_tokenizer *tokenizer = nullptr;
    if (moir_status st = moir_model_tokenizer(get()->model, &tokenizer); st != MOIR_OK)
      raiseLast(st, get()->path);
    return new Tokenizer(std::make_shared<TokenizerHandle>(get(), tokenizer, get()->path));
  }

  Session *session(int64_t capacity) const { return new Session(get(), capacity); }

  ChatTemplate *chatTemplate() const {
    moir_chat_template *t = nullptr;
    if (moir_status st = moir_model_chat_template(get()->model, &t); st != MOIR_OK)
      raiseLast(st, get()->path);
    return new ChatTemplate(get(), t, get()->path);
  }

private:
  ModelRef handle;
};

} // namespace

NB_MODULE(_moir, m) {
  m.doc() = "The MoIR runtime's C API (moir/runtime.h); use the moir package instead.";

  // Compiled CPU code is dlopen-ed by the runtime with RTLD_LOCAL and finds
  // the runtime's services (the __kmpc_* thread pool) in the global scope,
  // where an executable linked against libmoir_runtime.so has it. Python
  // loads this extension, and so the runtime it needs, locally: promote the
  // runtime to the global scope.
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void *>(&moir_last_error), &info) || !info.dli_fname ||
      !dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) {
    const char *why = dlerror();
    throw nb::import_error(
        (std::string("moir: cannot make the runtime library's symbols global: ") +
         (why ? why : "dladdr found no library"))
            .c_str());
  }

  m.attr("RUNTIME_VERSION") = nb::make_tuple(MOIR_RUNTIME_VERSION_MAJOR, MOIR_RUNTIME_VERSION_MINOR);
  m.attr("RUNTIME_LIBRARY") = info.dli_fname;

  m.def(
      "register_error_types",
      [](const nb::dict &types) {
        for (auto [key, value] : types) {
          int status = nb::cast<int>(key);
          if (status <= MOIR_OK || status > MOIR_ERROR_UNTRUSTED)
            throw nb::value_error("not a moir_status error code");
          Py_XDECREF(errorTypes[status]);
          errorTypes[status] = value.ptr();
          Py_INCREF(errorTypes[status]);
        }
      },
      "Sets the exception type raised for each moir_status value.");
  m.def("status_name", [](int status) { return std::string(moir_status_name(static_cast<moir_status>(status))); });

  nb::class_<TextStream>(m, "TextStream")
      .def("push", &TextStream::push, nb::arg("id"))
      .def("finish", &TextStream::finish);

  nb::class_<Tokenizer>(m, "Tokenizer")
      .def_static("open", &Tokenizer::open, nb::arg("path"))
      .def("encode", &Tokenizer::encode, nb::arg("text"), nb::arg("add_special") = false)
      .def("decode", &Tokenizer::decode, nb::arg("ids"), nb::arg("skip_special") = false)
      .def_prop_ro("vocab_size", &Tokenizer::vocabSize)
      .def_prop_ro("bos_id", &Tokenizer::bosId)
      .def_prop_ro("eos_id", &Tokenizer::eosId)
      .def_prop_ro("stop_ids", &Tokenizer::stopIds)
      .def("is_special", &Tokenizer::isSpecial, nb::arg("id"))
      .def("token", &Tokenizer::token, nb::arg("id"))
      .def("stream", &Tokenizer::stream, nb::arg("skip_special") = false);

  nb::class_<ChatTemplate>(m, "ChatTemplate")
      .def_static("open", &ChatTemplate::open, nb::arg("name"), nb::arg("source"))
      .def("render", &ChatTemplate::render, nb::arg("messages"),
           nb::arg("add_generation_prompt") = true, nb::arg("bos_token") = nb::none(),
           nb::arg("eos_token") = nb::none());

  nb::class_<Session>(m, "Session",
                      "A generation session: its own KV cache, position and logits. Runs hold "
                      "a lock, so one session used from several threads runs one call at a time.")
      .def("run", &Session::run, nb::arg("tokens"), nb::arg("logits") = true,
           "Runs the tokens at the current position (a prefill, or a decode step for one "
           "token) and advances it; returns their logits, float32 [len(tokens), vocab] "
           "(None with logits=False, which computes the last token's logits only).")
      .def("logits", &Session::lastLogits,
           "Logits of every token of the last run, float32 [n, vocab] (after a run with "
           "logits=False, the last token's: [1, vocab]).")
      .def_prop_ro("position", &Session::position,
                   "Tokens in the cache: where the next run starts.")
      .def_prop_ro("capacity", &Session::sessionCapacity, "KV-cache rows of this session.")
      .def("reset", &Session::reset, "Forgets the cache: the next run starts at position 0.");

  nb::class_<Sampler>(m, "Sampler")
      .def(nb::init<float, int32_t, float, uint64_t>(), nb::arg("temperature"),
           nb::arg("top_k"), nb::arg("top_p"), nb::arg("seed"))
      .def("sample", &Sampler::sample, nb::arg("session"));

  nb::class_<Model>(m, "Model")
      .def(nb::init<const std::string &, const std::optional<std::string> &>(), nb::arg("path"),
           nb::arg("trusted_keys") = nb::none())
      .def("close", &Model::close)
      .def_prop_ro("closed", &Model::closed)
      .def_prop_ro("vocab_size", &Model::vocabSize)
      .def_prop_ro("capacity", &Model::capacity)
      .def_prop_ro("manifest", &Model::manifest)
      .def_prop_ro("weight_bytes", &Model::weightBytes)
      .def_prop_ro("parallel", &Model::parallel,
                   "(rank, ranks): this process's share of an expert-parallel artifact "
                   "(moirc --expert-parallel; open its directory in every rank of an MPI job)")
      .def("tokenizer", &Model::tokenizer)
      .def("session", &Model::session, nb::arg("capacity") = 0)
      .def("chat_template", &Model::chatTemplate);
}
