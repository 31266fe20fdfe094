"""moir.Model, Session, Tokenizer and ChatTemplate: the runtime's C API from Python."""

import math
import operator
import os
from pathlib import Path

import numpy as np

from . import _moir
from ._errors import InvalidArgumentError


def _token_ids(tokens):
    """Token ids as a list of ints: from a sequence of ints or a 1-D integer array."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError("token ids expected (a list of ints), got text")
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise TypeError(f"token ids expected (a 1-D integer array), got {tokens.dtype} "
                            f"of shape {tokens.shape}")
        return tokens.tolist()
    return [operator.index(t) for t in tokens]


class Tokenizer:
    """A tokenizer: the one an artifact carries (Model.tokenizer), or one read
    from a Hugging Face tokenizer.json (``moir.Tokenizer(path)``)."""

    def __init__(self, path):
        self.path = Path(os.fspath(path))
        self._tokenizer = _moir.Tokenizer.open(os.fspath(path))

    @classmethod
    def _of(cls, tokenizer, path):
        self = cls.__new__(cls)
        self.path = path
        self._tokenizer = tokenizer
        return self

    def __repr__(self):
        return f"<moir.Tokenizer {str(self.path)!r} vocab_size={self.vocab_size}>"

    @property
    def vocab_size(self):
        """One past the largest token id."""
        return self._tokenizer.vocab_size

    @property
    def bos_id(self):
        """The beginning-of-sequence token id, or None."""
        return self._tokenizer.bos_id

    @property
    def eos_id(self):
        """The end-of-sequence token id, or None."""
        return self._tokenizer.eos_id

    @property
    def stop_ids(self):
        """The token ids that end generation: EOS and the end-of-turn tokens
        the checkpoint declares."""
        return self._tokenizer.stop_ids

    def is_special(self, id):
        """Whether `id` is a special added token (BOS, EOS, turn markers)."""
        return self._tokenizer.is_special(operator.index(id))

    def token(self, id):
        """The stored text of token `id` (an added token's content, e.g.
        "<|eot_id|>"), or None outside the vocabulary."""
        return self._tokenizer.token(operator.index(id))

    def tokenize(self, text, add_special=False):
        """Token ids of `text`. With add_special, the tokenizer's own special
        tokens around it (its post-processor's: a BOS for Llama, Mistral,
        Gemma), as Hugging Face's add_special_tokens=True gives."""
        return self._tokenizer.encode(text, add_special)

    def detokenize(self, ids, skip_special=False):
        """The text of token ids; with skip_special, special added tokens are
        left out. Bytes that do not form UTF-8 become U+FFFD."""
        return self._tokenizer.decode(_token_ids(ids), skip_special)

    def detokenize_stream(self, ids, skip_special=False):
        """Text pieces of token ids as they come (an iterator over an
        iterable of ids): each piece ends on a character boundary, the bytes
        of a character still incomplete are held back; a continuation's text
        (no decoder strips its first space)."""
        stream = self._tokenizer.stream(skip_special)
        for id in ids:
            piece = stream.push(operator.index(id))
            if piece:
                yield piece
        rest = stream.finish()
        if rest:
            yield rest


def _messages(messages):
    """(role, content) pairs from {"role": ..., "content": ...} mappings."""
    out = []
    for i, m in enumerate(messages):
        try:
            role, content = m["role"], m.get("content")
        except (TypeError, KeyError, AttributeError):
            raise TypeError(f"message {i}: a mapping with 'role' and 'content' expected, "
                            f"got {m!r}") from None
        if not isinstance(role, str) or not (content is None or isinstance(content, str)):
            raise TypeError(f"message {i}: role must be a str and content a str or None")
        out.append((role, content))
    return out


class ChatTemplate:
    """A Hugging Face chat template (Jinja2), rendered as transformers'
    apply_chat_template renders it: the artifact's (Model.chat_template) or
    one from its source (``moir.ChatTemplate(source, name)``; `name` names it
    in errors)."""

    def __init__(self, source, name="chat_template.jinja"):
        self.name = name
        self._template = _moir.ChatTemplate.open(name, source)

    @classmethod
    def _of(cls, template, name):
        self = cls.__new__(cls)
        self.name = name
        self._template = template
        return self

    def render(self, messages, add_generation_prompt=True, bos_token=None, eos_token=None):
        """The text of `messages` ({"role", "content"} mappings; content may be
        None); with add_generation_prompt, ending with the assistant turn's
        opening. bos_token/eos_token: the texts the template may use (None:
        undefined). A template that refuses the conversation (raise_exception)
        raises InvalidArgumentError, any other failure FormatError, naming the
        template and the line."""
        return self._template.render(_messages(messages), add_generation_prompt, bos_token,
                                     eos_token)


class Session:
    """A generation session: its own KV cache, position and logits.

    ``run(tokens)`` runs tokens at the current position (a prefill, then one
    token per decode step) and returns their logits; ``reset()`` starts over.
    Runs release the GIL; one session runs one call at a time.
    """

    def __init__(self, session):
        self._session = session

    def run(self, tokens):
        """Runs `tokens` at the current position; returns their logits
        (numpy float32, shape [len(tokens), vocab_size])."""
        return self._session.run(_token_ids(tokens))

    def logits(self):
        """The logits of the last run, float32 [n, vocab_size]."""
        return self._session.logits()

    @property
    def position(self):
        """Tokens in the cache: where the next run starts."""
        return self._session.position

    @property
    def capacity(self):
        """KV-cache rows: the most tokens a session holds."""
        return self._session.capacity

    def reset(self):
        """Forgets the cache: the next run starts at position 0."""
        self._session.reset()


class Model:
    """A compiled model (an artifact written by moirc), opened by the runtime.

    trusted_keys: a file of public keys (moirc --generate-signing-key); the
    artifact is then refused (UntrustedError) unless signed by one of them.
    Use as a context manager or call close(); sessions and generators that
    are still in use keep the artifact open until they finish.
    """

    def __init__(self, path, trusted_keys=None):
        self.path = Path(os.fspath(path))
        keys = None if trusted_keys is None else os.fspath(trusted_keys)
        self._model = _moir.Model(os.fspath(path), keys)
        self._tokenizer = None
        self._chat_template = None

    def close(self):
        self._tokenizer = None
        self._chat_template = None
        self._model.close()

    @property
    def closed(self):
        return self._model.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"vocab_size={self.vocab_size}, capacity={self.capacity}"
        return f"<moir.Model {str(self.path)!r} {state}>"

    @property
    def vocab_size(self):
        """Rows of the logits: the model's vocabulary."""
        return self._model.vocab_size

    @property
    def capacity(self):
        """KV-cache rows the model was compiled for: the longest prompt plus
        generated tokens a session holds."""
        return self._model.capacity

    @property
    def manifest(self):
        """The artifact's manifest text (target, model, arguments, tensors)."""
        return self._model.manifest

    @property
    def parallel(self):
        """(rank, ranks): this process's share of an expert-parallel artifact
        (moirc --expert-parallel=N; every rank of `mpirun -np N python ...`
        opens its directory and gets its own rank's file), (0, 1) otherwise."""
        return self._model.parallel

    # ---- Tokens and text -------------------------------------------------

    @property
    def tokenizer(self):
        """The Tokenizer moirc packed into the artifact; UnsupportedError when
        it holds none."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer._of(self._model.tokenizer(), self.path)
        return self._tokenizer

    def _has_tokenizer(self):
        # The manifest lists the files packed with the model (docs/artifact.md).
        return any(line.split()[:2] == ["resource", "tokenizer.json"]
                   for line in self.manifest.splitlines())

    def tokenize(self, text, add_special=False):
        """Token ids of `text` through the artifact's tokenizer
        (Tokenizer.tokenize)."""
        return self.tokenizer.tokenize(text, add_special=add_special)

    def detokenize(self, ids, skip_special=False):
        """The text of token ids (Tokenizer.detokenize)."""
        return self.tokenizer.detokenize(ids, skip_special=skip_special)

    @property
    def stop_ids(self):
        """The token ids that end generation (Tokenizer.stop_ids); [] for an
        artifact without a tokenizer."""
        return self.tokenizer.stop_ids if self._has_tokenizer() else []

    # ---- Chat ------------------------------------------------------------

    @property
    def chat_template(self):
        """The ChatTemplate moirc packed into the artifact; UnsupportedError
        when it holds none."""
        if self._chat_template is None:
            self._chat_template = ChatTemplate._of(self._model.chat_template(), str(self.path))
        return self._chat_template

    def apply_chat_template(self, messages, add_generation_prompt=True, template=None):
        """The prompt text of `messages` through the artifact's chat template
        (or `template`), with the tokenizer's BOS and EOS texts."""
        template = self.chat_template if template is None else template
        tokenizer = self.tokenizer
        bos = None if tokenizer.bos_id is None else tokenizer.token(tokenizer.bos_id)
        eos = None if tokenizer.eos_id is None else tokenizer.token(tokenizer.eos_id)
        return template.render(messages, add_generation_prompt=add_generation_prompt,
                               bos_token=bos, eos_token=eos)

    def chat(self, messages, template=None, **generate_kwargs):
        """The assistant's reply to `messages` ({"role", "content"} mappings):
        the conversation rendered by the chat template (apply_chat_template),
        tokenized as it stands (the template writes the special tokens), then
        generate(); generate_kwargs as there (stream=True: text pieces)."""
        text = self.apply_chat_template(messages, add_generation_prompt=True, template=template)
        ids = self.tokenize(text, add_special=False)
        return self.generate(ids, **generate_kwargs)

    # ---- Running ---------------------------------------------------------

    def session(self, capacity=0):
        """A new Session (capacity: 0 for the model's, or fewer rows)."""
        return Session(self._model.session(capacity))

    def logits(self, tokens):
        """The logits of every token of `tokens` run from an empty cache, in a
        fresh session: numpy float32 of shape [len(tokens), vocab_size]."""
        return self._model.session(0).run(_token_ids(tokens))

    def _prompt_ids(self, prompt, add_special):
        if isinstance(prompt, str):
            ids = self.tokenize(prompt, add_special=add_special)
        else:
            ids = _token_ids(prompt)
        if not ids:
            raise InvalidArgumentError(f"{self.path}: the prompt has no tokens")
        return ids

    def generate_tokens(self, prompt, max_tokens=64, temperature=0.0, top_k=0, top_p=1.0,
                        seed=0, stop_tokens=None, add_special=True):
        """Generated token ids, one at a time (an iterator).

        prompt: text, tokenized with the artifact's tokenizer (with its
        special tokens, e.g. a BOS, unless add_special=False), or token ids,
        used as they are. The prompt is run at once (errors, such as a prompt
        longer than the capacity, are raised here); tokens are then sampled
        one by one: greedy with temperature 0, else from softmax(logits /
        temperature) cut to the top_k most likely and then to the smallest
        set reaching probability top_p, from the generator seeded with seed.
        Generation ends at a stop token (not yielded): stop_tokens, or by
        default the tokenizer's stop_ids (EOS and end-of-turn tokens); after
        max_tokens tokens; or when the KV cache is full (at most
        capacity - len(prompt) + 1 tokens).
        """
        if isinstance(max_tokens, bool) or operator.index(max_tokens) < 0:
            raise InvalidArgumentError(f"max_tokens must be a whole number >= 0, got {max_tokens!r}")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise InvalidArgumentError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if not (0 <= seed < 2**64):
            raise InvalidArgumentError(f"seed must be in [0, 2^64), got {seed!r}")
        ids = self._prompt_ids(prompt, add_special)
        stops = frozenset(self.stop_ids if stop_tokens is None else _token_ids(stop_tokens))
        sampler = _moir.Sampler(float(temperature), int(top_k), float(top_p), int(seed))
        session = self._model.session(0)
        session.run(ids, False)
        return self._tokens(session, sampler, operator.index(max_tokens), stops)

    @staticmethod
    def _tokens(session, sampler, max_tokens, stops):
        for i in range(max_tokens):
            token = sampler.sample(session)
            if token in stops:
                return
            yield token
            if i + 1 == max_tokens or session.position >= session.capacity:
                return
            session.run([token], False)

    def generate(self, prompt, max_tokens=64, temperature=0.0, top_k=0, top_p=1.0, seed=0,
                 stream=True, stop_tokens=None, add_special=True):
        """Generates text after `prompt` (text or token ids); arguments as in
        generate_tokens. With stream=True, an iterator of text pieces as they
        are decoded (each ends on a character boundary); with stream=False,
        the whole text."""
        tokenizer = self.tokenizer
        tokens = self.generate_tokens(prompt, max_tokens=max_tokens, temperature=temperature,
                                      top_k=top_k, top_p=top_p, seed=seed,
                                      stop_tokens=stop_tokens, add_special=add_special)
        pieces = tokenizer.detokenize_stream(tokens)
        return pieces if stream else "".join(pieces)
