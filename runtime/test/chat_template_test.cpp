// Chat template conformance: every template of test/fixtures/chat_templates
// rendered over every conversation of expected.json (written by Python's
// jinja2 through make_expected.py, as transformers renders chat templates)
// must give the same bytes, or fail where jinja2 failed with the same
// message (raise_exception's text, an undefined value, ...). The C API
// (moir_chat_template_render, its buffer protocol) must give what the
// engine gives. Then every template of malformed/ must be refused as
// malformed.json says: the stage (open or render), the status, and a
// message that names the template, its line and what is wrong.
//
//   moir_chat_template_test TEMPLATES_DIR
#include "../src/chat_template.h"
#include "moir/runtime.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using json = nlohmann::json;

namespace {

std::string slurp(const std::string &path, bool *ok = nullptr) {
  std::ifstream in(path, std::ios::binary);
  if (ok)
    *ok = static_cast<bool>(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool endsWith(const std::string &s, const std::string &tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// Where two texts first differ, with a little context of each.
std::string firstDifference(const std::string &want, const std::string &got) {
  size_t at = 0;
  while (at < want.size() && at < got.size() && want[at] == got[at])
    ++at;
  size_t from = at > 40 ? at - 40 : 0;
  return "at byte " + std::to_string(at) + " (sizes " + std::to_string(want.size()) + " and " +
         std::to_string(got.size()) + ")\n    want: " + json(want.substr(from, 100)).dump(-1, ' ', false, json::error_handler_t::replace) +
         "\n    got:  " + json(got.substr(from, 100)).dump(-1, ' ', false, json::error_handler_t::replace);
}

struct Conversation {
  std::vector<std::string> roles, contents;
  std::vector<moir_chat_message> messages;
  bool addGenerationPrompt = false;
  bool hasBos = false, hasEos = false;
  std::string bos, eos;
};

Conversation readConversation(const json &c) {
  Conversation conv;
  for (const json &m : c["messages"]) {
    conv.roles.push_back(m["role"].get<std::string>());
    conv.contents.push_back(m["content"].get<std::string>());
  }
  for (size_t k = 0; k < conv.roles.size(); ++k)
    conv.messages.push_back({conv.roles[k].c_str(), conv.contents[k].c_str()});
  conv.addGenerationPrompt = c["add_generation_prompt"].get<bool>();
  conv.hasBos = c["bos_token"].is_string();
  conv.hasEos = c["eos_token"].is_string();
  if (conv.hasBos)
    conv.bos = c["bos_token"].get<std::string>();
  if (conv.hasEos)
    conv.eos = c["eos_token"].get<std::string>();
  return conv;
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: moir_chat_template_test TEMPLATES_DIR\n");
    return 2;
  }
  std::string root = argv[1];
  bool ok = false;
  std::string text = slurp(root + "/expected.json", &ok);
  if (!ok) {
    std::fprintf(stderr, "%s/expected.json: cannot read it\n", root.c_str());
    return 1;
  }
  json expected = json::parse(text);
  // The clock make_expected.py gave strftime_now.
  std::tm now{};
  std::string iso = expected["now"].get<std::string>();
  if (std::sscanf(iso.c_str(), "%d-%d-%dT%d:%d:%d", &now.tm_year, &now.tm_mon, &now.tm_mday,
                  &now.tm_hour, &now.tm_min, &now.tm_sec) != 6) {
    std::fprintf(stderr, "expected.json: bad 'now' %s\n", iso.c_str());
    return 1;
  }
  now.tm_year -= 1900;
  now.tm_mon -= 1;
  timegm(&now); // fills in the weekday and the day of the year
  moir::rt::chat::RenderOptions fixed;
  fixed.now = &now;

  std::vector<std::pair<std::string, Conversation>> conversations;
  for (const auto &[name, c] : expected["conversations"].items())
    conversations.emplace_back(name, readConversation(c));

  int passed = 0, failed = 0;
  auto report = [&](bool good, const std::string &what, const std::string &detail) {
    (good ? passed : failed) += 1;
    if (!good)
      std::fprintf(stderr, "FAIL %s: %s\n", what.c_str(), detail.c_str());
  };

  for (const auto &[name, spec] : expected["templates"].items()) {
    bool found = false;
    std::string source = slurp(root + "/" + name, &found);
    if (!found) {
      report(false, name, "cannot read the template");
      continue;
    }
    moir_chat_template *t = nullptr;
    moir_status opened = moir_chat_template_open(name.c_str(), source.data(), source.size(), &t);
    if (spec.contains("compile_error")) {
      std::string want = spec["compile_error"].get<std::string>();
      report(opened == MOIR_ERROR_FORMAT && endsWith(moir_last_error(), want), name + " (open)",
             "jinja2 refuses it: " + want + "; this runtime: " +
                 (opened == MOIR_OK ? std::string("opened it") : moir_last_error()));
      moir_chat_template_close(t);
      continue;
    }
    if (opened != MOIR_OK) {
      report(false, name + " (open)", moir_last_error());
      continue;
    }
    for (const auto &[conv, c] : conversations) {
      const json &want = spec["cases"][conv];
      std::string what = name + " / " + conv;
      std::string got;
      moir_status s = moir::rt::chat::render(
          t, c.messages.data(), c.messages.size(), c.addGenerationPrompt,
          c.hasBos ? c.bos.c_str() : nullptr, c.hasEos ? c.eos.c_str() : nullptr, fixed, &got);
      std::string error = s == MOIR_OK ? "" : moir_last_error();
      if (want.contains("output")) {
        std::string w = want["output"].get<std::string>();
        if (s != MOIR_OK)
          report(false, what, "jinja2 renders it; this runtime: " + error);
        else
          report(got == w, what, "the text differs " + firstDifference(w, got));
      } else {
        std::string w = want["error"].get<std::string>(), kind = want["kind"].get<std::string>();
        // raise_exception: the template refuses the conversation.
        moir_status status =
            kind == "TemplateError" ? MOIR_ERROR_INVALID_ARGUMENT : MOIR_ERROR_FORMAT;
        bool good = s == status && endsWith(error, ": " + w) &&
                    error.compare(0, name.size() + 1, name + ":") == 0;
        report(good, what,
               "jinja2 raises " + kind + ": " + w + "; this runtime: " +
                   (s == MOIR_OK ? "rendered it" : std::string(moir_status_name(s)) + ": " + error));
      }
      // The C API: the needed size first, then the text, equal to the
      // engine's at the real clock. A template that prints the time
      // (strftime_now with seconds) can change between the calls; the
      // engine renders before and after, and a round whose two renders
      // differ is done again (a clock tick, not a fault: it cannot happen
      // three times running).
      const char *bos = c.hasBos ? c.bos.c_str() : nullptr, *eos = c.hasEos ? c.eos.c_str() : nullptr;
      for (int round = 0;; ++round) {
        std::string engine, after;
        moir::rt::chat::RenderOptions real;
        moir_status se = moir::rt::chat::render(t, c.messages.data(), c.messages.size(),
                                                c.addGenerationPrompt, bos, eos, real, &engine);
        size_t bytes = 0;
        moir_status probe = moir_chat_template_render(t, c.messages.data(), c.messages.size(),
                                                      c.addGenerationPrompt, bos, eos, nullptr, 0, &bytes);
        if (se != MOIR_OK) {
          report(probe == se, what + " (C API)", "the engine fails, the C API gives " +
                                                    std::string(moir_status_name(probe)));
          break;
        }
        if (engine.empty()) {
          report(probe == MOIR_OK && bytes == 0, what + " (C API)", "empty text: want MOIR_OK, 0 bytes");
          break;
        }
        std::string buffer(bytes, '\0');
        size_t bytes2 = 0;
        moir_status full = moir_chat_template_render(t, c.messages.data(), c.messages.size(),
                                                     c.addGenerationPrompt, bos, eos, buffer.data(),
                                                     buffer.size(), &bytes2);
        moir_status sa = moir::rt::chat::render(t, c.messages.data(), c.messages.size(),
                                                c.addGenerationPrompt, bos, eos, real, &after);
        if ((sa != MOIR_OK || after != engine) && round < 2)
          continue; // the clock moved between the renders
        report(probe == MOIR_ERROR_OUT_OF_RANGE && bytes == engine.size() && full == MOIR_OK &&
                   bytes2 == bytes && buffer == engine,
               what + " (C API)", "the buffer protocol or its text differs from the engine's");
        break;
      }
    }
    moir_chat_template_close(t);
  }

  // Malformed and hostile templates: refused, with a clear message, quickly.
  json malformed = json::parse(slurp(root + "/malformed/malformed.json"));
  for (const auto &[file, spec] : malformed.items()) {
    std::string source = slurp(root + "/malformed/" + file, &ok);
    if (!ok) {
      report(false, "malformed/" + file, "cannot read it");
      continue;
    }
    std::string stage = spec["stage"].get<std::string>(), phrase = spec["message"].get<std::string>();
    std::string status = spec["status"].get<std::string>();
    auto start = std::chrono::steady_clock::now();
    moir_chat_template *t = nullptr;
    moir_status s = moir_chat_template_open(file.c_str(), source.data(), source.size(), &t);
    if (stage == "render" && s == MOIR_OK) {
      moir_chat_message m{"user", "Hello"};
      size_t bytes = 0;
      s = moir_chat_template_render(t, &m, 1, 1, "<s>", "</s>", nullptr, 0, &bytes);
      if (s == MOIR_ERROR_OUT_OF_RANGE) // it rendered (the probe only lacked room)
        s = MOIR_OK;
    } else if (stage == "render") {
      report(false, "malformed/" + file, std::string("should open, fails: ") + moir_last_error());
      continue;
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string error = s == MOIR_OK ? "" : moir_last_error();
    bool good = s != MOIR_OK && status == moir_status_name(s) &&
                error.compare(0, file.size() + 1, file + ":") == 0 &&
                error.find(phrase) != std::string::npos;
    report(good, "malformed/" + file,
           "want " + status + " with '" + phrase + "'; got " +
               (s == MOIR_OK ? std::string("MOIR_OK") : std::string(moir_status_name(s)) + ": " + error));
    if (good)
      std::printf("refused %s in %.2f s: %s\n", file.c_str(), seconds, error.c_str());
    moir_chat_template_close(t);
  }

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed || passed == 0 ? 1 : 0;
}
