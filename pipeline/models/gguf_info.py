"""A GGUF's tensor table and a few header keys, read by llama.cpp's own C reader (ggml's gguf API).

gguf-py's `GGUFReader` parses every metadata value element by element in Python: for a file
that carries a 49k-token vocabulary and its merges that is ~10 s per open, paid by the imatrix
naming and the quant-mix read of every export. ggml's `gguf_init_from_file` (in the
libggml-base that llama-cpp-python ships) reads the same header in C in milliseconds, with
`no_alloc` so no weights are loaded. Only the tensor table and string/uint32 keys are read.

Example:
    python -c "from pipeline.models.gguf_info import read_gguf; \
        print(read_gguf('build/cpu-int4/model.Q4_K_M.gguf').tensors[0])"
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

GGUF_TYPE_UINT32 = 4  # enum gguf_type in ggml/include/gguf.h
GGUF_TYPE_STRING = 8


@dataclass(frozen=True)
class GgufTensor:
    name: str
    type: str  # ggml type name, upper case as gguf-py spells it: Q4_K, Q8_0, F16
    n_elements: int
    n_bytes: int
    columns: int  # ne[0]: the input width of a weight matrix


@dataclass(frozen=True)
class GgufInfo:
    tensors: list[GgufTensor]
    keys: dict[str, str | int] = field(default_factory=dict)
    data_end: int = 0  # where the last tensor's bytes end: a complete file is at least this long


class _InitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]


@functools.cache
def _lib() -> ctypes.CDLL:
    # found, not imported: `import llama_cpp` loads libllama too (a no-op rebuild checks files)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise ImportError("llama-cpp-python is not installed: run `make setup`")
    lib = ctypes.CDLL(str(Path(spec.origin).parent / "lib" / "libggml-base.so"))
    p, i64, s = ctypes.c_void_p, ctypes.c_int64, ctypes.c_char_p
    signatures = {
        "gguf_init_from_file": (p, [s, _InitParams]), "gguf_free": (None, [p]),
        "gguf_get_n_kv": (i64, [p]), "gguf_get_key": (s, [p, i64]),
        "gguf_get_kv_type": (ctypes.c_int, [p, i64]),
        "gguf_get_val_str": (s, [p, i64]), "gguf_get_val_u32": (ctypes.c_uint32, [p, i64]),
        "gguf_get_n_tensors": (i64, [p]), "gguf_get_tensor_name": (s, [p, i64]),
        "gguf_get_data_offset": (ctypes.c_size_t, [p]),
        "gguf_get_tensor_offset": (ctypes.c_size_t, [p, i64]),
        "gguf_get_tensor_type": (ctypes.c_int, [p, i64]),
        "gguf_get_tensor_size": (ctypes.c_size_t, [p, i64]),
        "ggml_type_name": (s, [ctypes.c_int]), "ggml_get_tensor": (p, [p, s]),
        "ggml_nelements": (i64, [p]), "ggml_nrows": (i64, [p]), "ggml_free": (None, [p]),
        "ggml_log_get": (None, [ctypes.POINTER(p), ctypes.POINTER(p)]),
        "ggml_log_set": (None, [p, p]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_DROP = _LOG_CALLBACK(lambda level, text, user: None)  # module-level: outlives every call


@contextlib.contextmanager
def _ggml_log_silenced(lib: ctypes.CDLL) -> Iterator[None]:
    """ggml's log callback set to drop messages, and the previous one put back after."""
    callback, user = ctypes.c_void_p(), ctypes.c_void_p()
    lib.ggml_log_get(ctypes.byref(callback), ctypes.byref(user))
    lib.ggml_log_set(ctypes.cast(_DROP, ctypes.c_void_p), None)
    try:
        yield
    finally:
        lib.ggml_log_set(callback, user)


def _scalar_keys(lib: ctypes.CDLL, ctx: int) -> dict[str, str | int]:
    """Every string and uint32 key (the vocabulary's arrays are neither: never converted)."""
    found: dict[str, str | int] = {}
    for kid in range(lib.gguf_get_n_kv(ctx)):
        kind, name = lib.gguf_get_kv_type(ctx, kid), lib.gguf_get_key(ctx, kid).decode()
        # ggml aborts the process on a getter of the wrong type: check the type first
        if kind == GGUF_TYPE_STRING:
            found[name] = lib.gguf_get_val_str(ctx, kid).decode("utf-8", "replace")
        elif kind == GGUF_TYPE_UINT32:
            found[name] = int(lib.gguf_get_val_u32(ctx, kid))
    return found


def read_gguf(path: Path | str) -> GgufInfo:
    """The tensor table and the string/uint32 keys of a GGUF file; ValueError when ggml
    cannot read its header (cut short there, damaged, not a GGUF)."""
    lib = _lib()
    meta = ctypes.c_void_p()
    with _ggml_log_silenced(lib):  # its reasons go to stderr; the caller words the error
        ctx = lib.gguf_init_from_file(str(path).encode(), _InitParams(True, ctypes.pointer(meta)))
    if not ctx:
        raise ValueError(f"{path} is not a readable GGUF file")
    try:
        tensors, data_end, data_offset = [], 0, int(lib.gguf_get_data_offset(ctx))
        for i in range(lib.gguf_get_n_tensors(ctx)):
            name = lib.gguf_get_tensor_name(ctx, i)
            tensor = lib.ggml_get_tensor(meta, name)
            n = int(lib.ggml_nelements(tensor))
            kind = lib.ggml_type_name(lib.gguf_get_tensor_type(ctx, i)).decode()
            tensors.append(GgufTensor(
                name=name.decode(), type=kind.upper(),
                n_elements=n, n_bytes=int(lib.gguf_get_tensor_size(ctx, i)),
                columns=n // max(int(lib.ggml_nrows(tensor)), 1)))
            data_end = max(data_end, data_offset + int(lib.gguf_get_tensor_offset(ctx, i))
                           + tensors[-1].n_bytes)
        return GgufInfo(tensors=tensors, keys=_scalar_keys(lib, ctx), data_end=data_end)
    finally:
        lib.ggml_free(meta)
        lib.gguf_free(ctx)
