//===- Tokenizer.h - what of a checkpoint's tokenizer goes into an artifact ===//
//
// moirc packs the tokenizer into the artifact so that it runs alone (text
// in, text out): as resources the runtime reads (runtime/src/tokenizer.cpp):
//   tokenizer.json         Hugging Face's format; from a GGUF file, written
//                          from its tokenizer.ggml.* metadata;
//   tokenizer_config.json  {"bos_token", "eos_token", "stop_token_ids"}: the
//                          ids that begin and end text, from
//                          tokenizer_config.json, generation_config.json and
//                          config.json, or GGUF's token ids;
//   chat_template.jinja    the chat template, when the checkpoint has one.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_FRONTEND_TOKENIZER_H
#define MOIR_FRONTEND_TOKENIZER_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <utility>
#include <vector>

namespace moir::frontend {

struct GGUFFile;

/// Named resources for the artifact, in the order they are packed.
using TokenizerResources = std::vector<std::pair<std::string, std::string>>;

/// From a Hugging Face tokenizer.json and the tokenizer_config.json,
/// generation_config.json, config.json and chat_template.jinja beside it.
llvm::Expected<TokenizerResources> readHFTokenizer(llvm::StringRef tokenizerJson);

/// From a GGUF file's metadata: "llama" vocabularies (SentencePiece, piece
/// scores) and "gpt2" ones (byte-level BPE with merges and the pre-tokenizer
/// llama.cpp names in tokenizer.ggml.pre). No tokenizer.ggml.model: none.
/// Others are refused, naming the key.
llvm::Expected<TokenizerResources> readGGUFTokenizer(const GGUFFile &file);

} // namespace moir::frontend

#endif // MOIR_FRONTEND_TOKENIZER_H
