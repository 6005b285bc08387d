"""Digests whose running state can be saved and restored on another node.

Python's hashlib cannot export a hash's internal state (and `rehash`, which could, refuses
OpenSSL 3). OpenSSL's low-level SHA-256/SHA-512 API works on a plain context struct, so this
module drives it through ctypes: the same native code as hashlib (same speed; ctypes releases
the GIL), and the context's raw bytes are the state. A chunked upload stores that state with
each acknowledged chunk, and the node that finishes the upload resumes from it instead of
re-reading the whole blob. Without libcrypto, hashes fall back to hashlib (`export()` is None,
and the caller re-reads the stored bytes, as before).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Protocol

STATE_MAGIC = b"ossl1"
# name: (context struct size, digest size, Init, Update, Final symbol prefix)
_CONTEXTS = {"sha256": (112, 32, "SHA256"), "sha512": (216, 64, "SHA512")}


def _load_libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        for _, _, prefix in _CONTEXTS.values():
            for suffix, args in (("_Init", [ctypes.c_void_p]),
                                 ("_Update", [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
                                 ("_Final", [ctypes.c_char_p, ctypes.c_void_p])):
                func = getattr(lib, prefix + suffix)
                func.argtypes, func.restype = args, ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load_libcrypto()


class ResumableHash(Protocol):
    algorithm: str

    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...

    def export(self) -> bytes | None:
        """The running state, or None when this hash cannot export it."""


class _OpenSSLHash:
    """A SHA-2 hash on a raw OpenSSL context whose bytes are its state."""

    def __init__(self, algorithm: str, context: ctypes.Array[ctypes.c_char] | None = None) -> None:
        assert _LIB is not None
        self.algorithm = algorithm
        size, self._digest_size, prefix = _CONTEXTS[algorithm]
        self._update = getattr(_LIB, prefix + "_Update")
        self._final = getattr(_LIB, prefix + "_Final")
        if context is None:
            context = ctypes.create_string_buffer(size)
            if getattr(_LIB, prefix + "_Init")(context) != 1:
                raise RuntimeError(f"{prefix}_Init failed")
        self._context = context

    def update(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if data and self._update(self._context, data, len(data)) != 1:
            raise RuntimeError("digest update failed")

    def hexdigest(self) -> str:
        copy = ctypes.create_string_buffer(self._context.raw, len(self._context))
        out = ctypes.create_string_buffer(self._digest_size)
        if self._final(out, copy) != 1:
            raise RuntimeError("digest finalisation failed")
        return out.raw.hex()

    def export(self) -> bytes | None:
        return STATE_MAGIC + self.algorithm.encode() + b":" + self._context.raw


class _PlainHash:
    """hashlib, when libcrypto's low-level API is not available."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def export(self) -> bytes | None:
        return None


def new_hash(algorithm: str) -> ResumableHash:
    if _LIB is not None and algorithm in _CONTEXTS:
        return _OpenSSLHash(algorithm)
    return _PlainHash(algorithm)


def restore_hash(algorithm: str, state: bytes | None) -> ResumableHash | None:
    """The hash saved by `export()`, or None when the state is absent or not usable here."""
    if state is None or _LIB is None or algorithm not in _CONTEXTS:
        return None
    header = STATE_MAGIC + algorithm.encode() + b":"
    size = _CONTEXTS[algorithm][0]
    if not state.startswith(header) or len(state) != len(header) + size:
        return None
    return _OpenSSLHash(algorithm, ctypes.create_string_buffer(state[len(header):], size))
