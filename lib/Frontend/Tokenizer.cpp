//===- Tokenizer.cpp - a checkpoint's tokenizer, as artifact resources ----===//
//
// Hugging Face folders: tokenizer.json as it is (checked to be JSON), the
// BOS/EOS and stop ids from tokenizer_config.json, generation_config.json and
// config.json, the chat template from tokenizer_config.json or
// chat_template.jinja.
//
// GGUF files: tokenizer.json written from tokenizer.ggml.* as llama.cpp reads
// them. A "llama" vocabulary (SentencePiece) has piece scores instead of
// merges: it becomes a "moir.ScoreBPE" model (any adjacent pair whose
// concatenation is a piece merges, highest score first), with U+2581 for
// spaces, a prefix space when tokenizer.ggml.add_space_prefix says so, and
// byte fallback. A "gpt2" vocabulary is byte-level BPE with merges; its
// pre-tokenizer is the regex list llama.cpp uses for tokenizer.ggml.pre.
// Control, unknown and user-defined tokens become added tokens (matched in
// the text; control and unknown ones special).
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/Tokenizer.h"
#include "moir/Frontend/GGUF.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cmath>
#include <map>
#include <optional>
#include <set>

using namespace llvm;

namespace moir::frontend {
namespace {

Error fail(const Twine &message) {
  return createStringError(inconvertibleErrorCode(), message);
}

/// A JSON file beside the tokenizer; std::nullopt when it does not exist.
Expected<std::optional<json::Value>> readJsonFile(StringRef path) {
  if (!sys::fs::exists(path))
    return std::nullopt;
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(path);
  if (!buffer)
    return fail(path + ": cannot read: " + buffer.getError().message());
  Expected<json::Value> value = json::parse((*buffer)->getBuffer());
  if (!value)
    return fail(path + ": not JSON: " + toString(value.takeError()));
  return std::optional<json::Value>(std::move(*value));
}

/// A token given as a string or as {"content": ...} (an AddedToken).
std::optional<std::string> tokenText(const json::Value *v) {
  if (!v)
    return std::nullopt;
  if (std::optional<StringRef> s = v->getAsString())
    return s->str();
  if (const json::Object *o = v->getAsObject())
    if (std::optional<StringRef> s = o->getString("content"))
      return s->str();
  return std::nullopt;
}

/// eos_token_id as an integer or a list of them into `ids`.
Error addIds(const json::Value *v, StringRef file, std::vector<int64_t> &ids) {
  if (!v || v->kind() == json::Value::Null)
    return Error::success();
  if (std::optional<int64_t> id = v->getAsInteger()) {
    ids.push_back(*id);
    return Error::success();
  }
  if (const json::Array *a = v->getAsArray()) {
    for (const json::Value &e : *a) {
      std::optional<int64_t> id = e.getAsInteger();
      if (!id)
        return fail(file + ": eos_token_id holds a value that is not a token id");
      ids.push_back(*id);
    }
    return Error::success();
  }
  return fail(file + ": eos_token_id is neither a token id nor a list of them");
}

std::string serialize(json::Value value) {
  std::string out;
  raw_string_ostream os(out);
  os << value;
  return out;
}

/// The tokenizer_config.json resource (the stop ids without repeats).
std::string configResource(std::optional<std::string> bos, std::optional<std::string> eos,
                           const std::vector<int64_t> &stops) {
  json::Object config;
  config["bos_token"] = bos ? json::Value(*bos) : json::Value(nullptr);
  config["eos_token"] = eos ? json::Value(*eos) : json::Value(nullptr);
  json::Array ids;
  std::set<int64_t> seen;
  for (int64_t id : stops)
    if (seen.insert(id).second)
      ids.push_back(id);
  config["stop_token_ids"] = std::move(ids);
  return serialize(json::Value(std::move(config)));
}

/// The regexes llama.cpp splits a "gpt2" vocabulary's text with, by
/// tokenizer.ggml.pre (src/llama-vocab.cpp), for the families MoIR imports;
/// and whether it ignores merges for a whole word in the vocabulary.
struct PreTokenizer {
  std::vector<std::string> patterns;
  bool ignoreMerges = false;
  bool addBos = false;
};

std::optional<PreTokenizer> preTokenizerFor(StringRef pre) {
  static const char *gpt2 =
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
  static const char *llama3 =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
      "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char *qwen2 =
      "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
      "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (pre == "default" || pre.empty())
    return PreTokenizer{{"[\\p{P}\\$\\+<=>\\^~\\|]+", gpt2, "\\p{N}+", "[0-9][0-9][0-9]"}};
  if (pre == "gpt-2" || pre == "olmo")
    return PreTokenizer{{gpt2}};
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe")
    return PreTokenizer{{llama3}, /*ignoreMerges=*/true, /*addBos=*/true};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen")
    return PreTokenizer{{qwen2}};
  if (pre == "deepseek-v3")
    return PreTokenizer{{"\\p{N}{1,3}",
                         "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                         "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
                         "[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|"
                         "\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}};
  if (pre == "deepseek-llm")
    return PreTokenizer{
        {"[\r\n]",
         "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
         "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
         "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
         "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
         "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57"
         "\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4"
         "\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
         "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d"
         "\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b"
         "\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f"
         "\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a"
         "\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
         "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
         "\U0001e900-\U0001e943]+",
         "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
         "\\s+$",
         "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
         "\\p{N}+"}};
  return std::nullopt;
}

} // namespace

Expected<TokenizerResources> readHFTokenizer(StringRef tokenizerJson) {
  TokenizerResources out;
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(tokenizerJson);
  if (!buffer)
    return fail(tokenizerJson + ": cannot read the tokenizer: " + buffer.getError().message());
  Expected<json::Value> tokenizer = json::parse((*buffer)->getBuffer());
  if (!tokenizer)
    return fail(tokenizerJson + ": not JSON: " + toString(tokenizer.takeError()));
  out.emplace_back("tokenizer.json", (*buffer)->getBuffer().str());

  // Every piece, for checking the names in tokenizer_config.json.
  std::set<std::string> pieces;
  if (const json::Object *t = tokenizer->getAsObject()) {
    if (const json::Object *model = t->getObject("model"))
      if (const json::Object *vocab = model->getObject("vocab"))
        for (const auto &kv : *vocab)
          pieces.insert(kv.first.str());
    if (const json::Array *added = t->getArray("added_tokens"))
      for (const json::Value &a : *added)
        if (std::optional<std::string> s = tokenText(&a))
          pieces.insert(*s);
  }

  SmallString<256> dir = sys::path::parent_path(tokenizerJson);
  auto beside = [&](StringRef name) {
    SmallString<256> p = dir;
    sys::path::append(p, name);
    return std::string(p);
  };
  std::optional<std::string> bos, eos, chatTemplate;
  std::vector<int64_t> stops;
  std::string configPath = beside("tokenizer_config.json");
  Expected<std::optional<json::Value>> config = readJsonFile(configPath);
  if (!config)
    return config.takeError();
  if (*config) {
    const json::Object *c = (*config)->getAsObject();
    if (!c)
      return fail(configPath + ": not a JSON object");
    bos = tokenText(c->get("bos_token"));
    eos = tokenText(c->get("eos_token"));
    for (auto [key, value] : {std::pair{"bos_token", bos}, std::pair{"eos_token", eos}})
      if (value && !pieces.count(*value))
        return fail(configPath + ": " + key + " '" + *value +
                    "' is not a token of tokenizer.json");
    if (const json::Value *t = c->get("chat_template")) {
      if (std::optional<StringRef> s = t->getAsString()) {
        chatTemplate = s->str();
      } else if (const json::Array *named = t->getAsArray()) {
        // [{"name": ..., "template": ...}]: the default one.
        for (const json::Value &e : *named)
          if (const json::Object *o = e.getAsObject())
            if (o->getString("name") == "default")
              if (std::optional<StringRef> s = o->getString("template"))
                chatTemplate = s->str();
        if (!chatTemplate)
          return fail(configPath + ": chat_template is a list without a 'default' template");
      } else if (t->kind() != json::Value::Null) {
        return fail(configPath + ": chat_template is neither a string nor a list of templates");
      }
    }
  }
  // Newer checkpoints keep the template in its own file.
  if (!chatTemplate && sys::fs::exists(beside("chat_template.jinja"))) {
    ErrorOr<std::unique_ptr<MemoryBuffer>> t = MemoryBuffer::getFile(beside("chat_template.jinja"));
    if (!t)
      return fail(beside("chat_template.jinja") + ": cannot read: " + t.getError().message());
    chatTemplate = (*t)->getBuffer().str();
  }
  // Generation ends at the EOS and at the ids the checkpoint declares.
  for (StringRef name : {"generation_config.json", "config.json"}) {
    std::string path = beside(name);
    Expected<std::optional<json::Value>> file = readJsonFile(path);
    if (!file)
      return file.takeError();
    if (*file)
      if (const json::Object *o = (*file)->getAsObject())
        if (Error err = addIds(o->get("eos_token_id"), path, stops))
          return std::move(err);
  }
  out.emplace_back("tokenizer_config.json", configResource(bos, eos, stops));
  if (chatTemplate)
    out.emplace_back("chat_template.jinja", *chatTemplate);
  return out;
}

Expected<TokenizerResources> readGGUFTokenizer(const GGUFFile &file) {
  TokenizerResources out;
  const GGUFValue *model = file.get("tokenizer.ggml.model");
  if (!model)
    return out;
  auto bad = [&](const Twine &why) { return fail(file.path + ": " + why); };
  if (model->kind != GGUFValue::Kind::String)
    return bad("tokenizer.ggml.model is not a string");
  StringRef kind = model->s;
  if (kind != "llama" && kind != "gpt2")
    return bad("tokenizer.ggml.model '" + kind +
               "' is not one MoIR reads (llama, gpt2); compile with --tokenizer=none or "
               "--tokenizer=tokenizer.json");
  const GGUFValue *tokens = file.get("tokenizer.ggml.tokens");
  if (!tokens || tokens->kind != GGUFValue::Kind::Array || tokens->strings.empty() ||
      tokens->strings.size() != tokens->count)
    return bad("tokenizer.ggml.tokens is missing or not a list of strings");
  size_t n = tokens->strings.size();
  auto numbers = [&](StringRef key, bool required) -> Expected<const std::vector<double> *> {
    const GGUFValue *v = file.get(key);
    if (!v) {
      if (required)
        return bad(key + " is missing");
      return nullptr;
    }
    if (v->kind != GGUFValue::Kind::Array || v->numbers.size() != n)
      return bad(key + " does not hold one number per token (" + Twine(n) + ")");
    return &v->numbers;
  };
  Expected<const std::vector<double> *> types = numbers("tokenizer.ggml.token_type", false);
  if (!types)
    return types.takeError();
  Expected<const std::vector<double> *> scores =
      numbers("tokenizer.ggml.scores", /*required=*/kind == "llama");
  if (!scores)
    return scores.takeError();
  auto id = [&](StringRef key) -> Expected<std::optional<int64_t>> {
    const GGUFValue *v = file.get(key);
    if (!v)
      return std::nullopt;
    std::optional<int64_t> i = v->getInteger();
    if (!i || *i < 0 || static_cast<size_t>(*i) >= n)
      return bad(key + " is not a token id of the vocabulary");
    return i;
  };
  auto flag = [&](StringRef key, bool otherwise) {
    const GGUFValue *v = file.get(key);
    return v && v->kind == GGUFValue::Kind::Bool ? v->b : otherwise;
  };
  for (size_t i = 0; i < n; ++i)
    if (!json::isUTF8(tokens->strings[i]))
      return bad("tokenizer.ggml.tokens[" + Twine(i) + "] is not UTF-8");

  std::optional<PreTokenizer> pre;
  StringRef preName;
  if (kind == "gpt2") {
    if (const GGUFValue *p = file.get("tokenizer.ggml.pre"); p && p->kind == GGUFValue::Kind::String)
      preName = p->s;
    pre = preTokenizerFor(preName);
    if (!pre)
      return bad("tokenizer.ggml.pre '" + preName +
                 "' is not a pre-tokenizer MoIR knows (default, gpt-2, olmo, llama-bpe, qwen2, "
                 "deepseek-llm, deepseek-v3); compile with --tokenizer=none or "
                 "--tokenizer=tokenizer.json");
  }

  json::Object t;
  t["version"] = "1.0";
  // Control (3), unknown (2) and user-defined (4) tokens are matched in the
  // text; byte tokens (6) are the vocabulary's byte fallback.
  json::Array added;
  if (*types)
    for (size_t i = 0; i < n; ++i) {
      int type = static_cast<int>((**types)[i]);
      if (type != 2 && type != 3 && type != 4)
        continue;
      if (tokens->strings[i].empty())
        continue;
      added.push_back(json::Object{{"id", static_cast<int64_t>(i)},
                                   {"content", tokens->strings[i]},
                                   {"single_word", false},
                                   {"lstrip", false},
                                   {"rstrip", false},
                                   {"normalized", false},
                                   {"special", type != 4}});
    }
  t["added_tokens"] = std::move(added);

  Expected<std::optional<int64_t>> bos = id("tokenizer.ggml.bos_token_id");
  if (!bos)
    return bos.takeError();
  Expected<std::optional<int64_t>> eos = id("tokenizer.ggml.eos_token_id");
  if (!eos)
    return eos.takeError();
  Expected<std::optional<int64_t>> unk = id("tokenizer.ggml.unknown_token_id");
  if (!unk)
    return unk.takeError();
  bool addBos = flag("tokenizer.ggml.add_bos_token", kind == "llama" || (pre && pre->addBos));
  bool addEos = flag("tokenizer.ggml.add_eos_token", false);
  const std::string space = "\u2581";
  if (kind == "llama") {
    bool prefix = flag("tokenizer.ggml.add_space_prefix", true);
    json::Array normalizers;
    if (prefix)
      normalizers.push_back(json::Object{{"type", "Prepend"}, {"prepend", space}});
    normalizers.push_back(json::Object{
        {"type", "Replace"}, {"pattern", json::Object{{"String", " "}}}, {"content", space}});
    t["normalizer"] = json::Object{{"type", "Sequence"}, {"normalizers", std::move(normalizers)}};
    t["pre_tokenizer"] = nullptr;
    json::Array vocab;
    for (size_t i = 0; i < n; ++i) {
      double score = (**scores)[i];
      if (!std::isfinite(score))
        return bad("tokenizer.ggml.scores[" + Twine(i) + "] is not finite");
      vocab.push_back(json::Array{tokens->strings[i], score});
    }
    json::Object m{{"type", "moir.ScoreBPE"}, {"vocab", std::move(vocab)}};
    if (*unk)
      m["unk_id"] = **unk;
    t["model"] = std::move(m);
    json::Array decoders{
        json::Object{{"type", "Replace"}, {"pattern", json::Object{{"String", space}}}, {"content", " "}},
        json::Object{{"type", "ByteFallback"}}, json::Object{{"type", "Fuse"}}};
    if (prefix)
      decoders.push_back(json::Object{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    t["decoder"] = json::Object{{"type", "Sequence"}, {"decoders", std::move(decoders)}};
  } else {
    const GGUFValue *merges = file.get("tokenizer.ggml.merges");
    if (!merges || merges->kind != GGUFValue::Kind::Array || merges->strings.size() != merges->count)
      return bad("tokenizer.ggml.merges is missing or not a list of strings");
    json::Object vocab;
    for (size_t i = 0; i < n; ++i)
      vocab[tokens->strings[i]] = static_cast<int64_t>(i);
    json::Array mergeList;
    for (size_t i = 0; i < merges->strings.size(); ++i) {
      const std::string &m = merges->strings[i];
      if (!json::isUTF8(m) || m.find(' ', 1) == std::string::npos)
        return bad("tokenizer.ggml.merges[" + Twine(i) + "] is not two pieces");
      mergeList.push_back(m);
    }
    t["model"] = json::Object{{"type", "BPE"},
                              {"vocab", std::move(vocab)},
                              {"merges", std::move(mergeList)},
                              {"ignore_merges", pre->ignoreMerges},
                              {"byte_fallback", false}};
    t["normalizer"] = nullptr;
    json::Array steps;
    for (const std::string &p : pre->patterns)
      steps.push_back(json::Object{{"type", "Split"},
                                   {"pattern", json::Object{{"Regex", p}}},
                                   {"behavior", "Isolated"},
                                   {"invert", false}});
    steps.push_back(json::Object{{"type", "ByteLevel"}, {"add_prefix_space", false},
                                 {"trim_offsets", true}, {"use_regex", false}});
    t["pre_tokenizer"] = json::Object{{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
    t["decoder"] = json::Object{{"type", "ByteLevel"}};
  }
  // BOS/EOS around a text, as llama.cpp's add_special.
  json::Array single;
  json::Object specials;
  auto special = [&](int64_t i) {
    const std::string &name = tokens->strings[i];
    specials[name] = json::Object{{"id", name}, {"ids", json::Array{i}}, {"tokens", json::Array{name}}};
    return json::Object{{"SpecialToken", json::Object{{"id", name}, {"type_id", 0}}}};
  };
  if (addBos && *bos)
    single.push_back(special(**bos));
  single.push_back(json::Object{{"Sequence", json::Object{{"id", "A"}, {"type_id", 0}}}});
  if (addEos && *eos)
    single.push_back(special(**eos));
  t["post_processor"] = json::Object{{"type", "TemplateProcessing"},
                                     {"single", std::move(single)},
                                     {"pair", json::Array{}},
                                     {"special_tokens", std::move(specials)}};
  out.emplace_back("tokenizer.json", serialize(json::Value(std::move(t))));

  std::vector<int64_t> stops;
  if (*eos)
    stops.push_back(**eos);
  // End-of-turn and end-of-message tokens end a reply too.
  for (StringRef key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    Expected<std::optional<int64_t>> extra = id(key);
    if (!extra)
      return extra.takeError();
    if (*extra)
      stops.push_back(**extra);
  }
  // And the end-of-turn markers of the usual chat formats, where the
  // vocabulary has them as control tokens (llama.cpp ends generation there
  // too).
  if (*types)
    for (size_t i = 0; i < n; ++i)
      if (static_cast<int>((**types)[i]) == 3 &&
          is_contained({"<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>",
                        "<|endoftext|>", "<|end_of_text|>"},
                       StringRef(tokens->strings[i])))
        stops.push_back(static_cast<int64_t>(i));
  std::optional<std::string> bosText, eosText;
  if (*bos)
    bosText = tokens->strings[**bos];
  if (*eos)
    eosText = tokens->strings[**eos];
  out.emplace_back("tokenizer_config.json", configResource(bosText, eosText, stops));
  if (const GGUFValue *chat = file.get("tokenizer.chat_template")) {
    if (chat->kind != GGUFValue::Kind::String)
      return bad("tokenizer.chat_template is not a string");
    out.emplace_back("chat_template.jinja", chat->s);
  }
  return out;
}

} // namespace moir::frontend
