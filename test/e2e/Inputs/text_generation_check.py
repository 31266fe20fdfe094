# Checks moir-run -p's JSON (argv[1]): the prompt's ids spell "Hello world"
# in the vocabulary of argv[2] (a byte-level BPE tokenizer.json), and the
# text is the decoding of the generated tokens (bytes that are not UTF-8
# shown as U+FFFD); prints the prompt ids for --tokens.
import json
import sys

report = json.load(open(sys.argv[1]))
vocab = json.load(open(sys.argv[2]))["model"]["vocab"]
ids = report["prompt_tokens"]
# Byte-level: every id's token string, with GPT-2's byte map undone, must
# spell the prompt.
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + n)
        n += 1
decode = {chr(c): b for b, c in zip(bs, cs)}
pieces = {i: t for t, i in vocab.items()}
text = bytes(decode[ch] for i in ids for ch in pieces[i]).decode("utf-8")
if text != "Hello world":
    sys.exit("the prompt ids spell %r, not 'Hello world'" % text)
generated = bytes(decode[ch] for i in report["tokens"] for ch in pieces[i]).decode("utf-8", "replace")
if generated != report["text"]:
    sys.exit("text %r is not the decoding of the tokens (%r)" % (report["text"], generated))
print(",".join(str(i) for i in ids))
