// Chat templates: the subset of Jinja2 that Hugging Face chat templates use,
// rendered as Python's jinja2 renders them for transformers'
// apply_chat_template (trim_blocks, lstrip_blocks, the loopcontrols
// extension, an immutable sandbox, raise_exception, strftime_now and a
// tojson that is json.dumps with ensure_ascii=False). docs/chat.md lists the
// subset.
#ifndef MOIR_RUNTIME_CHAT_TEMPLATE_H
#define MOIR_RUNTIME_CHAT_TEMPLATE_H

#include "moir/runtime.h"

#include <cstdint>
#include <ctime>
#include <string>

namespace moir::rt::chat {

/// Bounds that keep a hostile template from hanging the process or taking
/// its memory; passing one is an error naming the template and the line.
struct Limits {
  /// Bytes of the rendered text.
  size_t maxOutput = size_t(16) << 20;
  /// Loop iterations, macro calls and list elements built, all together.
  uint64_t maxSteps = 10'000'000;
  /// Nested macro calls.
  int maxCallDepth = 100;
};

struct RenderOptions {
  /// The time strftime_now formats; null: the local time now.
  const std::tm *now = nullptr;
  Limits limits;
};

/// Renders like moir_chat_template_render into `out`, with explicit options
/// (the conformance test fixes the clock).
moir_status render(const moir_chat_template *t, const moir_chat_message *messages, size_t n,
                   int addGenerationPrompt, const char *bosToken, const char *eosToken,
                   const RenderOptions &options, std::string *out);

} // namespace moir::rt::chat

#endif
