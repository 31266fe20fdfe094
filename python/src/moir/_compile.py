"""moir.compile: runs the moirc compiler."""

import os
import shutil
import subprocess
from pathlib import Path

from ._errors import CompileError


def find_moirc():
    """The moirc binary: $MOIR_MOIRC, then moirc on PATH, then build/bin/moirc
    of the source tree this package was built from."""
    env = os.environ.get("MOIR_MOIRC")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise CompileError(f"MOIR_MOIRC={env}: no executable moirc there")
        return Path(env)
    found = shutil.which("moirc")
    if found:
        return Path(found)
    try:
        from ._build_info import SOURCE_DIR
    except ImportError:
        SOURCE_DIR = None
    if SOURCE_DIR:
        candidate = Path(SOURCE_DIR) / "build" / "bin" / "moirc"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise CompileError("moirc not found: set MOIR_MOIRC to its path or put it on PATH "
                       "(it is built into build/bin by scripts/build.sh)")


def _option(key, value):
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, os.PathLike):
        value = os.fspath(value)
    return f"{flag}={value}"


def compile(model_path, output=None, target="cpu", **options):
    """Compiles a model (a Hugging Face checkpoint folder or a GGUF file) with
    moirc into an artifact and returns the artifact's path.

    output: the artifact's path; by default MODEL.moir beside the folder (the
    file's name with .moir for a GGUF file). target: "cpu", "nvidia" or "amd".
    Every other keyword is a moirc option: ``cache_capacity=64`` is
    ``--cache-capacity=64``, ``flash_attention=False`` is
    ``--flash-attention=false``, a list is comma-separated; None leaves the
    option out. Raises CompileError with moirc's messages when it fails.
    """
    model_path = Path(os.fspath(model_path))
    if output is None:
        name = model_path.stem if model_path.is_file() else model_path.name
        output = model_path.parent / (name + ".moir")
    output = Path(os.fspath(output))
    moirc = find_moirc()
    command = [str(moirc), str(model_path), f"--target={target}"]
    command += [_option(k, v) for k, v in options.items() if v is not None]
    command += ["-o", str(output)]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")
    if result.returncode != 0:
        stderr = result.stderr.strip()
        raise CompileError(f"moirc failed (exit {result.returncode}) on {model_path}:\n{stderr}",
                           returncode=result.returncode, stderr=result.stderr, command=command)
    return output
