"""MoIR from Python: compile MoE language models with moirc, run the
artifacts with the MoIR runtime, tokenize and generate text.

    import moir
    artifact = moir.compile("models/mixtral", cache_capacity=4096)
    with moir.Model(artifact) as model:
        for piece in model.generate("Once upon a time", max_tokens=32):
            print(piece, end="", flush=True)

See docs/python.md.
"""

from . import _moir
from ._errors import (CompileError, DeviceError, Error, FileError, FormatError,
                      InvalidArgumentError, OutOfRangeError, UnsupportedError, UntrustedError)
from ._compile import compile, find_moirc
from ._model import ChatTemplate, Model, Session, Tokenizer

__version__ = "0.1.0"
RUNTIME_VERSION = _moir.RUNTIME_VERSION

__all__ = [
    "ChatTemplate", "CompileError", "DeviceError", "Error", "FileError", "FormatError", "InvalidArgumentError",
    "Model", "OutOfRangeError", "RUNTIME_VERSION", "Session", "Tokenizer", "UnsupportedError",
    "UntrustedError", "compile", "find_moirc",
]
