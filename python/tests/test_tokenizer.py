"""moir.Tokenizer on the runtime's tokenizer fixtures: the ids and text of
Hugging Face's tokenizers package (test/fixtures/tokenizers/*/expected.json)."""

import json

import pytest

import moir
from conftest import TOKENIZERS

NAMES = sorted(p.parent.name for p in TOKENIZERS.glob("*/tokenizer.json"))


def test_fixtures_found():
    assert len(NAMES) >= 5 and "gpt2-tiny" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_fixture_tokenizer(name):
    corpus = (TOKENIZERS / "corpus.txt").read_text(encoding="utf-8")
    lines = corpus.splitlines(keepends=True)
    expected = json.loads((TOKENIZERS / name / "expected.json").read_text(encoding="utf-8"))
    tokenizer = moir.Tokenizer(TOKENIZERS / name / "tokenizer.json")
    assert len(lines) == len(expected["lines"])
    for line, want in zip(lines, expected["lines"]):
        assert tokenizer.tokenize(line) == want, line
    ids = tokenizer.tokenize(corpus)
    assert ids == expected["corpus"]
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.detokenize(ids) == expected["decoded"]
    streamed = list(tokenizer.detokenize_stream(ids))
    assert all("\ufffd" not in piece for piece in streamed)
    assert "".join(streamed) == expected.get("streamed", expected["decoded"])
    # The post-processor's special tokens (a BOS) around the first line.
    special = tokenizer.tokenize(lines[0], add_special=True)
    assert special == expected.get("special", expected["lines"][0])
    if special != expected["lines"][0]:
        assert tokenizer.bos_id is not None and special[0] == tokenizer.bos_id
        assert tokenizer.is_special(tokenizer.bos_id)


def test_tokenizer_errors(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(moir.FileError, match=str(missing)):
        moir.Tokenizer(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 5}}')
    with pytest.raises(moir.Error, match=str(bad)) as e:
        moir.Tokenizer(bad)
    assert isinstance(e.value, (moir.FormatError, moir.UnsupportedError))
    tokenizer = moir.Tokenizer(TOKENIZERS / "gpt2-tiny" / "tokenizer.json")
    with pytest.raises(moir.OutOfRangeError, match="gpt2-tiny"):
        tokenizer.detokenize([tokenizer.vocab_size])
    with pytest.raises(UnicodeEncodeError):
        tokenizer.tokenize("\ud800")
