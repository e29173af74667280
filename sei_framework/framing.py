"""The data-only framing of every process channel: a JSON header and raw byte blobs, never a pickle.

A frame is a 4-byte big-endian header length, a UTF-8 JSON header, then the blobs the header
declares, back to back:

    {"v": 1, "blobs": [n0, n1, ...], "value": <the value>}

The value holds JSON types; `bytes` travel as {"$bytes": i} (blob i), long strings as {"$str": i}
(UTF-8, so the header stays small) and numpy arrays of a plain numeric dtype as
{"$array": i, "dtype": "<f8", "shape": [...]}. A dict key starting with "$" is
refused, so no value can pass for a blob. Reading checks every size before it reads, so a peer that
lies about a length, or sends anything but a frame, gets a FrameError, and nothing it sent runs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from .errors import SeiError

__all__ = ["FrameError", "MAX_FRAME_BYTES", "decode_frame", "encode_frame", "read_frame", "write_frame"]

VERSION = 1
_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 1 << 20
MAX_FRAME_BYTES = 1 << 30
"""Default bound of one frame's blobs (evaluation keys of Concrete circuits reach a few hundred MB)."""
_DTYPES = frozenset(
    np.dtype(name).newbyteorder("<").str
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "complex64", "complex128")  # fmt: skip
)
_MAX_DEPTH = 64
_SHORT_STR = 1024


class FrameError(SeiError):
    """Bytes on a process channel that are not one well-formed frame, or a value no frame can carry."""

    code = "bad_frame"


def _encode(value: Any, blobs: list[bytes], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise FrameError(f"a value nested deeper than {_MAX_DEPTH} levels cannot be framed")
    if isinstance(value, str) and len(value) > _SHORT_STR:
        blobs.append(value.encode("utf-8", errors="surrogatepass"))
        return {"$str": len(blobs) - 1}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FrameError("a non-finite float cannot be framed (JSON has none)")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        blobs.append(bytes(value))
        return {"$bytes": len(blobs) - 1}
    if isinstance(value, np.ndarray):
        dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
        if dtype.str not in _DTYPES:
            raise FrameError(f"an array of dtype {value.dtype} cannot be framed (plain numbers only)")
        blobs.append(np.ascontiguousarray(value, dtype=dtype.newbyteorder("<")).tobytes())
        return {"$array": len(blobs) - 1, "dtype": dtype.newbyteorder("<").str, "shape": list(value.shape)}
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        return _encode(value.item(), blobs, depth)
    if isinstance(value, (list, tuple)):
        return [_encode(item, blobs, depth + 1) for item in value]
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("$"):
                raise FrameError(f"a dict key must be a string not starting with '$', not {key!r}")
            encoded[key] = _encode(item, blobs, depth + 1)
        return encoded
    raise FrameError(f"a value of type {type(value).__name__} cannot be framed: send bytes, JSON types or numeric arrays")


def encode_frame(value: Any) -> bytes:
    """One frame holding `value` (FrameError if it holds anything but data)."""
    blobs: list[bytes] = []
    header = {"v": VERSION, "blobs": [], "value": _encode(value, blobs, 0)}
    header["blobs"] = [len(blob) for blob in blobs]
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(text) > MAX_HEADER_BYTES:
        raise FrameError(f"a frame's JSON header is {len(text)} bytes, over {MAX_HEADER_BYTES}: send bulk data as bytes")
    return b"".join([_LENGTH.pack(len(text)), text, *blobs])


def _header(raw: bytes, max_bytes: int) -> tuple[Any, list[int]]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FrameError("the frame's header is not JSON") from None
    if not isinstance(header, dict) or set(header) != {"v", "blobs", "value"} or header["v"] != VERSION:
        raise FrameError(f"the frame's header is not a version {VERSION} frame header")
    sizes = header["blobs"]
    if not isinstance(sizes, list) or not all(type(size) is int and size >= 0 for size in sizes):
        raise FrameError("the frame's blob sizes are not a list of sizes")
    if sum(sizes) > max_bytes:
        raise FrameError(f"the frame declares {sum(sizes)} bytes of blobs, over the channel's bound of {max_bytes}")
    return header["value"], sizes


def _decode(value: Any, blobs: list[bytes], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise FrameError(f"the frame's value is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_decode(item, blobs, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    if "$bytes" in value or "$array" in value or "$str" in value:
        return _blob(value, blobs)
    if any(key.startswith("$") for key in value):
        raise FrameError("the frame's value has a dict key starting with '$' that names no blob")
    return {key: _decode(item, blobs, depth + 1) for key, item in value.items()}


def _blob(ref: dict[str, Any], blobs: list[bytes]) -> Any:
    index = ref.get("$bytes", ref.get("$array", ref.get("$str")))
    if type(index) is not int or not 0 <= index < len(blobs):
        raise FrameError("the frame's value names a blob it does not hold")
    if set(ref) == {"$bytes"}:
        return blobs[index]
    if set(ref) == {"$str"}:
        try:
            return blobs[index].decode("utf-8", errors="surrogatepass")
        except UnicodeDecodeError:
            raise FrameError("the frame's value holds a string that is not UTF-8") from None
    dtype, shape = ref.get("dtype"), ref.get("shape")
    if set(ref) != {"$array", "dtype", "shape"} or dtype not in _DTYPES:
        raise FrameError("the frame's value holds an array of a dtype it may not carry")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise FrameError("the frame's value holds an array with a malformed shape")
    itemsize = np.dtype(dtype).itemsize
    if int(np.prod(shape, dtype=object)) * itemsize != len(blobs[index]):
        raise FrameError(f"the frame's array of shape {shape} and dtype {dtype} does not fill its {len(blobs[index])} bytes")
    return np.frombuffer(blobs[index], dtype=dtype).reshape(shape).copy()


def read_frame(read: Callable[[int], bytes], *, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """The value of the next frame; `read(n)` returns exactly n bytes (fewer: the channel ended)."""

    def exactly(size: int, what: str) -> bytes:
        data = read(size)
        if len(data) != size:
            raise FrameError(f"the channel ended inside a frame's {what} ({len(data)} of {size} bytes)")
        return data

    (size,) = _LENGTH.unpack(exactly(_LENGTH.size, "length"))
    if not 2 <= size <= MAX_HEADER_BYTES:
        raise FrameError(f"the frame's header length {size} is out of bounds (not a frame: 2..{MAX_HEADER_BYTES} bytes)")
    value, sizes = _header(exactly(size, "header"), max_bytes)
    blobs = [exactly(n, "blobs") for n in sizes]
    return _decode(value, blobs, 0)


def decode_frame(data: bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """The value of `data`, which must be exactly one frame."""
    view, offset = memoryview(data), 0

    def read(size: int) -> bytes:
        nonlocal offset
        chunk = bytes(view[offset : offset + size])
        offset += len(chunk)
        return chunk

    value = read_frame(read, max_bytes=max_bytes)
    if offset != len(data):
        raise FrameError(f"{len(data) - offset} bytes follow the frame")
    return value


def read_stream(stream: BinaryIO, *, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """The next frame of a blocking stream; EOFError when it ends cleanly between frames."""
    first = stream.read(1)
    if not first:
        raise EOFError("the stream ended")
    pending = [first]

    def read(size: int) -> bytes:
        head = pending.pop() if pending else b""
        return head + stream.read(size - len(head)) if size > len(head) else head

    return read_frame(read, max_bytes=max_bytes)


def write_frame(stream: BinaryIO, value: Any) -> None:
    """Write `value` as one frame and flush."""
    stream.write(encode_frame(value))
    stream.flush()
