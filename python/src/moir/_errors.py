"""The exceptions of the moir package: one per moir_status of the runtime."""

from . import _moir


class Error(Exception):
    """A runtime call failed; the message names the file and the problem.

    ``status`` is the runtime's status name, e.g. ``"MOIR_ERROR_FORMAT"``.
    """

    status = "MOIR_ERROR"


class InvalidArgumentError(Error, ValueError):
    """MOIR_ERROR_INVALID_ARGUMENT: a bad argument (e.g. a NaN temperature)."""

    status = "MOIR_ERROR_INVALID_ARGUMENT"


class FileError(Error, OSError):
    """MOIR_ERROR_IO: a file cannot be read (missing, unreadable)."""

    status = "MOIR_ERROR_IO"


class FormatError(Error):
    """MOIR_ERROR_FORMAT: a file is not what it should be (corrupt, truncated)."""

    status = "MOIR_ERROR_FORMAT"


class OutOfRangeError(Error, IndexError):
    """MOIR_ERROR_OUT_OF_RANGE: a token id outside the vocabulary, a full KV cache."""

    status = "MOIR_ERROR_OUT_OF_RANGE"


class UnsupportedError(Error):
    """MOIR_ERROR_UNSUPPORTED: e.g. an artifact without a tokenizer."""

    status = "MOIR_ERROR_UNSUPPORTED"


class DeviceError(Error):
    """MOIR_ERROR_DEVICE: the GPU or its driver library failed or is missing."""

    status = "MOIR_ERROR_DEVICE"


class UntrustedError(Error):
    """MOIR_ERROR_UNTRUSTED: the artifact is unsigned, signed by another key, or changed."""

    status = "MOIR_ERROR_UNTRUSTED"


class CompileError(Error):
    """moirc failed (or cannot be found); the message holds moirc's stderr."""

    status = "moirc"

    def __init__(self, message, returncode=None, stderr="", command=()):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr
        self.command = list(command)


_moir.register_error_types({
    1: InvalidArgumentError,
    2: FileError,
    3: FormatError,
    4: OutOfRangeError,
    5: UnsupportedError,
    6: DeviceError,
    7: UntrustedError,
})
