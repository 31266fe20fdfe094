"""Fixtures: a tiny random Mixtral-shaped model with a byte-level BPE tokenizer,
compiled once per test session with moir.compile."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import moir

ROOT = Path(__file__).resolve().parents[2]
TOKENIZERS = ROOT / "test" / "fixtures" / "tokenizers"
# KV-cache rows the test artifact is compiled for: small, so the tests reach it.
CAPACITY = 64


def tool(name):
    """A tool of the build that holds moirc (build/bin), else one on PATH."""
    beside = moir.find_moirc().parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found beside {moir.find_moirc()} nor on PATH")
    return Path(found)


def check_logits(logits, rows, vocab):
    """Logits of the right type and shape, all finite, not all equal."""
    assert isinstance(logits, np.ndarray)
    assert logits.dtype == np.float32
    assert logits.shape == (rows, vocab)
    assert np.isfinite(logits).all(), "NaN or Inf in the logits"
    assert np.ptp(logits) > 0, "constant logits"
    return logits


def relative_error(got, want):
    """Largest difference relative to the largest |logit| (both finite)."""
    assert np.isfinite(got).all() and np.isfinite(want).all(), "NaN or Inf in the logits"
    assert got.shape == want.shape
    return float(np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "mix"
    subprocess.run([str(tool("moir-make-model")), str(folder), "--shape", "mixtral-tiny",
                    "--dtype", "f32", "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    shutil.copy(TOKENIZERS / "gpt2-tiny" / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="session")
def artifact(model_dir):
    path = moir.compile(model_dir, cache_capacity=CAPACITY)
    assert path == model_dir.parent / "mix.moir"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def model(artifact):
    with moir.Model(artifact) as m:
        yield m
