"""The moir package on a compiled artifact: tokens, logits, sessions, generation."""

import json
import subprocess
import threading

import numpy as np
import pytest

import moir
from conftest import CAPACITY, TOKENIZERS, check_logits, relative_error, tool

# The mixtral-tiny shape's vocabulary (moir-make-model).
VOCAB = 301
TOLERANCE = 1e-5


def corpus_lines():
    """The tokenizer fixtures' 24-language corpus, cut into lines with their
    line ends, and the tokenizers package's ids for each (expected.json)."""
    corpus = (TOKENIZERS / "corpus.txt").read_text(encoding="utf-8")
    lines = corpus.splitlines(keepends=True)
    expected = json.loads((TOKENIZERS / "gpt2-tiny" / "expected.json").read_text(encoding="utf-8"))
    assert len(lines) == len(expected["lines"]) >= 24
    return corpus, lines, expected


def test_properties(model, artifact):
    assert model.vocab_size == VOCAB
    assert model.capacity == CAPACITY
    assert model.path == artifact
    assert f"capacity {CAPACITY}" in model.manifest
    assert model.parallel == (0, 1)
    assert "target cpu" in model.manifest
    assert "moir.Model" in repr(model)


def test_tokenize_matches_tokenizers_package_and_round_trips(model):
    corpus, lines, expected = corpus_lines()
    for line, want in zip(lines, expected["lines"]):
        ids = model.tokenize(line)
        assert ids == want, line
        assert all(0 <= i < model.vocab_size for i in ids)
        assert model.detokenize(ids) == line
    ids = model.tokenize(corpus)
    assert ids == expected["corpus"]
    assert model.detokenize(ids) == corpus
    # numpy ids work the same.
    assert model.detokenize(np.array(ids, dtype=np.int64)) == corpus
    assert model.tokenize("") == []
    assert model.detokenize([]) == ""


def test_detokenize_skip_special(model):
    text = "<|begin_of_text|>Special tokens<|end_of_text|> inside"
    ids = model.tokenize(text)
    assert ids[0] == 0 and 1 in ids
    assert model.detokenize(ids) == text
    assert model.detokenize(ids, skip_special=True) == "Special tokens inside"


def test_logits_shape_finite_and_repeatable(model):
    prompt = model.tokenize("Dies ist ein kurzer Satz über Größe.")
    first = check_logits(model.logits(prompt), len(prompt), VOCAB)
    second = check_logits(model.logits(prompt), len(prompt), VOCAB)
    assert relative_error(second, first) <= TOLERANCE
    # Each position has its own logits.
    assert not np.allclose(first[0], first[-1])
    # A prefix's logits are the first rows of the whole prompt's (causal).
    assert relative_error(model.logits(prompt[:5]), first[:5]) <= TOLERANCE


def test_incremental_session_equals_whole_prompt(model):
    prompt = model.tokenize("This is a short sentence in English; isn't it?")
    assert len(prompt) > 12
    whole = check_logits(model.logits(prompt), len(prompt), VOCAB)
    session = model.session()
    assert session.position == 0 and session.capacity == CAPACITY
    rows = [check_logits(session.run(prompt[:8]), 8, VOCAB)]
    assert session.position == 8
    for token in prompt[8:]:
        rows.append(check_logits(session.run([token]), 1, VOCAB))
    assert session.position == len(prompt)
    assert relative_error(np.concatenate(rows), whole) <= TOLERANCE
    assert relative_error(session.logits(), rows[-1]) <= 0
    session.reset()
    assert session.position == 0
    assert session.logits().shape == (0, VOCAB)
    assert relative_error(session.run(np.array(prompt, dtype=np.int32)), whole) <= TOLERANCE


def test_sessions_in_threads(model):
    # Runs release the GIL: concurrent sessions must give the serial logits.
    prompt = model.tokenize("Questa è una frase breve in italiano, perché no?")
    want = model.logits(prompt)
    results = [None] * 4
    errors = []

    def work(i):
        try:
            session = model.session()
            for _ in range(3):
                session.reset()
                results[i] = session.run(prompt)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results:
        assert relative_error(got, want) <= TOLERANCE


def test_greedy_generation_is_deterministic_and_argmax(model):
    prompt = model.tokenize("Hello world")
    tokens = list(model.generate_tokens(prompt, max_tokens=16))
    assert len(tokens) == 16
    assert list(model.generate_tokens(prompt, max_tokens=16)) == tokens
    # Text prompts are tokenized the same way.
    assert list(model.generate_tokens("Hello world", max_tokens=16)) == tokens
    logits = check_logits(model.logits(prompt + tokens[:-1]), len(prompt) + 15, VOCAB)
    assert np.argmax(logits[len(prompt) - 1:], axis=1).tolist() == tokens
    # A random model whose greedy tokens are all one token would not test much.
    assert len(set(tokens)) > 1


def test_generation_matches_moir_run(model, artifact):
    # moir-run generates with the same runtime: the same tokens and text.
    out = subprocess.run([str(tool("moir-run")), str(artifact), "-p", "Hello world", "-n", "12",
                          "--json"], check=True, stdout=subprocess.PIPE, text=True).stdout
    report = json.loads(out)
    assert list(model.generate_tokens("Hello world", max_tokens=12)) == report["tokens"]
    assert model.generate("Hello world", max_tokens=12, stream=False) == report["text"]


def test_streaming_pieces_concatenate_to_the_text(model):
    text = model.generate("Once upon a time", max_tokens=24, stream=False)
    assert isinstance(text, str) and text
    pieces = model.generate("Once upon a time", max_tokens=24)
    assert not isinstance(pieces, str)
    pieces = list(pieces)
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == text
    tokens = list(model.generate_tokens("Once upon a time", max_tokens=24))
    assert text == model.detokenize(tokens)


def test_stream_pieces_end_on_character_boundaries(model):
    # Each of these characters spans several byte-level tokens: no piece may
    # hold half of one (it would show as U+FFFD).
    text = "漢字 and かな, 😀👍🏽, Größe"
    ids = model.tokenize(text)
    assert len(ids) > len(text)
    pieces = list(model.tokenizer.detokenize_stream(iter(ids)))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len(pieces) > 1


def test_stop_tokens(model, monkeypatch):
    prompt = model.tokenize("Hello world")
    tokens = list(model.generate_tokens(prompt, max_tokens=16))
    stop = tokens[5]
    first = tokens.index(stop)
    assert list(model.generate_tokens(prompt, max_tokens=16, stop_tokens=[stop])) == \
        tokens[:first]
    assert model.generate(prompt, max_tokens=16, stop_tokens=[stop], stream=False) == \
        model.detokenize(tokens[:first])
    # By default generation ends at the tokenizer's stop tokens (EOS, end of
    # turn); the test tokenizer declares none, so they are stood in for.
    assert model.stop_ids == model.tokenizer.stop_ids
    monkeypatch.setattr(moir.Model, "stop_ids", property(lambda self: [stop]))
    assert list(model.generate_tokens(prompt, max_tokens=16)) == tokens[:first]
    assert list(model.generate_tokens(prompt, max_tokens=16, stop_tokens=[])) == tokens


def test_sampling_is_seeded(model):
    prompt = model.tokenize("Hello")

    def sample(**kw):
        return list(model.generate_tokens(prompt, max_tokens=24, **kw))

    a = sample(temperature=1.0, seed=3)
    assert sample(temperature=1.0, seed=3) == a
    assert sample(temperature=1.0, seed=4) != a
    assert sample(temperature=1.0, top_k=1, seed=5) == sample()
    assert model.generate(prompt, max_tokens=24, temperature=1.0, seed=3, stream=False) == \
        model.detokenize(a)


def test_generation_stops_at_capacity(model):
    prompt = [5] * (CAPACITY - 4)
    tokens = list(model.generate_tokens(prompt, max_tokens=100))
    # The prompt fills 60 rows; 4 more tokens fit, and the 5th is sampled
    # from the last row's logits.
    assert len(tokens) == 5
    assert tokens == list(model.generate_tokens(prompt, max_tokens=5))
    assert list(model.generate_tokens(prompt, max_tokens=0)) == []
    with pytest.raises(moir.OutOfRangeError, match="capacity 64 exceeded") as e:
        model.generate_tokens([5] * (CAPACITY + 1))
    assert str(model.path) in str(e.value)


def test_session_past_capacity_changes_nothing(model):
    session = model.session()
    session.run([7] * (CAPACITY - 4))
    with pytest.raises(moir.OutOfRangeError, match=str(model.path)):
        session.run([7] * 5)
    assert session.position == CAPACITY - 4
    check_logits(session.run([7] * 4), 4, VOCAB)
    assert session.position == CAPACITY


def test_generate_argument_errors(model):
    with pytest.raises(moir.InvalidArgumentError):
        model.generate_tokens("Hi", temperature=float("nan"))
    with pytest.raises(moir.InvalidArgumentError):
        model.generate_tokens("Hi", temperature=-1.0)
    with pytest.raises(moir.InvalidArgumentError):
        model.generate_tokens("Hi", max_tokens=-1)
    with pytest.raises(moir.InvalidArgumentError, match="no tokens"):
        model.generate("")
    with pytest.raises(moir.InvalidArgumentError, match="no tokens"):
        model.logits([])
    with pytest.raises(TypeError):
        model.logits("text, not ids")


def _same_logits_under_mpirun(one, ranks_dir, tmp_path):
    """Every rank of `mpirun -np 2 python` opens `ranks_dir` (a 2-rank
    artifact's directory), gets its own rank's file, and computes the logits
    of the 1-rank artifact `one` bit for bit."""
    import os
    import shutil
    import sys

    assert sorted(p.name for p in ranks_dir.iterdir()) == ["rank0.moir", "rank1.moir"]
    script = tmp_path / "rank.py"
    script.write_text(f"""
import sys
import numpy as np
import moir
tokens = [3, 1, 4, 1, 5, 9, 2, 6]
with moir.Model({str(one)!r}) as one, moir.Model({str(ranks_dir)!r}) as mine:
    rank, ranks = mine.parallel
    assert ranks == 2, mine.parallel
    a = one.session().run(tokens)
    b = mine.session().run(tokens)
    assert np.isfinite(a).all() and np.ptp(a) > 0
    assert np.array_equal(a, b), float(np.max(np.abs(a - b)))
    print(f"rank {{rank}} of {{ranks}}: equal")
""")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", MOIR_COMM_TIMEOUT="120",
               # No shared-memory topology, no hwloc OpenCL/OpenGL plugins:
               # scripts/netns-mpi.sh says why.
               OMPI_MCA_rtc_hwloc_vmhole="none", HWLOC_PLUGINS_BLACKLIST="hwloc_opencl,hwloc_gl")
    result = subprocess.run([shutil.which("mpirun"), "-np", "2", sys.executable, str(script)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout
    assert "rank 0 of 2: equal" in result.stdout and "rank 1 of 2: equal" in result.stdout


def _need_mpi():
    import shutil
    from pathlib import Path

    plugin = Path(moir.__file__).parent / "libmoir_comm_mpi.so"
    if not shutil.which("mpirun") or not plugin.is_file():
        pytest.skip("unsupported: no mpirun, or the runtime was built without MPI")


def test_expert_parallel_under_mpirun(model_dir, artifact, tmp_path):
    """moir.compile(..., expert_parallel=2): the experts split over 2 ranks."""
    _need_mpi()
    ranks_dir = moir.compile(model_dir, output=tmp_path / "mix.ep2", cache_capacity=CAPACITY,
                             expert_parallel=2)
    _same_logits_under_mpirun(artifact, ranks_dir, tmp_path)


def test_tensor_parallel_under_mpirun(tmp_path):
    """moir.compile(..., tensor_parallel=2): a dense model's heads, FFN
    columns and LM head split over 2 ranks."""
    _need_mpi()
    folder = tmp_path / "dense"
    subprocess.run([str(tool("moir-make-model")), str(folder), "--shape", "mistral-tp-tiny",
                    "--dtype", "f32", "--seed", "3"], check=True, stdout=subprocess.DEVNULL)
    one = moir.compile(folder, output=tmp_path / "dense.moir", cache_capacity=CAPACITY)
    ranks_dir = moir.compile(folder, output=tmp_path / "dense.tp2", cache_capacity=CAPACITY,
                             tensor_parallel=2)
    _same_logits_under_mpirun(one, ranks_dir, tmp_path)
