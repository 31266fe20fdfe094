// Internal tokenizer entry points shared with the model loader.
#ifndef MOIR_RUNTIME_TOKENIZER_H
#define MOIR_RUNTIME_TOKENIZER_H

#include "moir/runtime.h"

#include <string>

/// Applies the artifact's tokenizer_config.json resource (what moirc keeps
/// of a checkpoint's tokenizer_config.json, generation_config.json or GGUF
/// metadata: {"bos_token", "eos_token", "stop_token_ids"}) to `t`; `name`
/// names the resource in errors.
moir_status moirTokenizerConfigure(moir_tokenizer *t, const std::string &name, const char *data,
                                   size_t bytes);

#endif
