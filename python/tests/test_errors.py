"""Failures raise moir.Error subclasses whose messages name the file."""

import os
import shutil
import stat
import subprocess

import pytest

import moir
from conftest import CAPACITY, check_logits


def test_missing_file(tmp_path):
    path = tmp_path / "missing.moir"
    with pytest.raises(moir.FileError) as e:
        moir.Model(path)
    assert isinstance(e.value, moir.Error) and isinstance(e.value, OSError)
    assert str(path) in str(e.value)
    assert e.value.status == "MOIR_ERROR_IO"


def test_truncated_artifact(tmp_path, artifact):
    path = tmp_path / "truncated.moir"
    data = artifact.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(moir.FormatError) as e:
        moir.Model(path)
    assert str(path) in str(e.value)
    assert "truncated" in str(e.value)


def test_not_an_artifact(tmp_path, model_dir):
    path = tmp_path / "config.moir"
    shutil.copy(model_dir / "config.json", path)
    with pytest.raises(moir.FormatError, match=str(path)):
        moir.Model(path)


def test_bad_token_ids(model):
    for bad in (model.vocab_size, -1, 2**40):
        with pytest.raises(moir.OutOfRangeError) as e:
            model.logits([1, bad])
        assert str(model.path) in str(e.value)
        assert str(bad) in str(e.value)
        with pytest.raises(moir.OutOfRangeError, match=str(model.path)):
            model.detokenize([bad if bad != model.vocab_size else 1000])
    with pytest.raises(moir.OutOfRangeError, match="outside the vocabulary"):
        model.session().run([model.vocab_size])


def test_closed_model(artifact):
    model = moir.Model(artifact)
    session = model.session()
    with model:
        pass
    assert model.closed
    with pytest.raises(ValueError, match="closed"):
        model.vocab_size
    with pytest.raises(ValueError, match="closed"):
        model.logits([1, 2])
    # A session keeps the artifact open.
    check_logits(session.run([1, 2, 3]), 3, 301)


def test_artifact_without_tokenizer(model_dir, tmp_path):
    bare = moir.compile(model_dir, output=tmp_path / "bare.moir", cache_capacity=CAPACITY,
                        tokenizer="none")
    with moir.Model(bare) as model:
        with pytest.raises(moir.UnsupportedError, match="holds no tokenizer") as e:
            model.tokenize("Hello")
        assert str(bare) in str(e.value)
        with pytest.raises(moir.UnsupportedError):
            model.generate([1, 2, 3])
        # Token ids in, token ids out still work.
        assert len(list(model.generate_tokens([1, 2, 3], max_tokens=4))) == 4


def test_signed_artifacts(model_dir, tmp_path):
    key = tmp_path / "key"
    subprocess.run([str(moir.find_moirc()), f"--generate-signing-key={key}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    unsigned = moir.compile(model_dir, output=tmp_path / "unsigned.moir", cache_capacity=CAPACITY)
    with pytest.raises(moir.UntrustedError, match=str(unsigned)):
        moir.Model(unsigned, trusted_keys=f"{key}.pub")
    signed = moir.compile(model_dir, output=tmp_path / "signed.moir", cache_capacity=CAPACITY,
                          sign=f"{key}.key")
    with moir.Model(signed, trusted_keys=f"{key}.pub") as model:
        assert model.vocab_size == 301


def test_compile_error(model_dir, tmp_path):
    out = tmp_path / "bad.moir"
    with pytest.raises(moir.CompileError) as e:
        moir.compile(model_dir, output=out, weight_type="bogus")
    assert "bogus" in str(e.value) and "bogus" in e.value.stderr
    assert e.value.returncode not in (0, None)
    assert "--weight-type=bogus" in e.value.command
    assert not out.exists()
    missing = tmp_path / "no-such-model"
    with pytest.raises(moir.CompileError, match=str(missing)):
        moir.compile(missing, output=out)


def fake_moirc(folder):
    """A moirc that records its arguments and writes the -o file."""
    script = folder / "moirc"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n'
                      'while [ "$#" -gt 1 ]; do [ "$1" = -o ] && : > "$2"; shift; done\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_compile_options(tmp_path, monkeypatch):
    script = fake_moirc(tmp_path)
    monkeypatch.setenv("MOIR_MOIRC", str(script))
    out = moir.compile(tmp_path / "m", target="nvidia", cache_capacity=32,
                       flash_attention=False, moe_fuse_router=True, gpu="sm_90",
                       weight_type_override=["a=q8_0", "b=bf16"], report=None)
    assert out == tmp_path / "m.moir" and out.exists()
    assert (tmp_path / "args").read_text().splitlines() == [
        str(tmp_path / "m"), "--target=nvidia", "--cache-capacity=32",
        "--flash-attention=false", "--moe-fuse-router=true", "--gpu=sm_90",
        "--weight-type-override=a=q8_0,b=bf16", "-o", str(out)]
    # A GGUF file's artifact is named after the file.
    gguf = tmp_path / "model.Q8_0.gguf"
    gguf.write_bytes(b"")
    assert moir.compile(gguf) == tmp_path / "model.Q8_0.moir"


def test_find_moirc(tmp_path, monkeypatch):
    monkeypatch.setenv("MOIR_MOIRC", str(tmp_path / "nowhere"))
    with pytest.raises(moir.CompileError, match="MOIR_MOIRC"):
        moir.find_moirc()
    script = fake_moirc(tmp_path)
    monkeypatch.delenv("MOIR_MOIRC")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert moir.find_moirc() == script
