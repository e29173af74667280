"""Load model files through an allow-list of exact classes: no code runs from a model file.

A pickle (or joblib dump) names every class and function it needs; `load_pickle` resolves only the
names in the allow-list it is given and refuses the file, naming the first other one, before that
name is imported. A .skops file is audited the same way: every type in it, not only those skops
itself distrusts, must be in the allow-list. An adapter passes its own list (the exact estimator
classes it serves) joined with `DATA_TYPES`, the numpy and builtin types that hold their data.
"""

from __future__ import annotations

import _compat_pickle
import inspect
import io
import pickle
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from zipfile import BadZipFile, ZipFile

from .errors import SeiError

__all__ = ["DATA_TYPES", "ModelFileError", "load_pickle", "load_skops", "skops_types"]

_NUMPY_SCALARS = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "longdouble", "complex64", "complex128", "str_", "bytes_",
)  # fmt: skip
_NUMPY_CORE = ("numpy._core", "numpy.core")  # numpy 2 and numpy 1 spell the same module differently

DATA_TYPES: frozenset[str] = frozenset(
    {
        # plain data
        *(f"builtins.{name}" for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes",
                                           "bytearray", "int", "float", "complex", "bool", "NoneType", "slice")),
        "_codecs.encode",  # how pickle protocol 2 stores bytes
        # arrays, dtypes and scalars
        "numpy.ndarray",
        "numpy.dtype",
        *(f"numpy.{name}" for name in _NUMPY_SCALARS),
        *(f"numpy.dtypes.{kind}DType" for kind in ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16",
                                                    "UInt32", "UInt64", "Float16", "Float32", "Float64",
                                                    "Complex64", "Complex128", "Str", "Bytes", "Object")),
        *(f"{core}.multiarray.{name}" for core in _NUMPY_CORE for name in ("_reconstruct", "scalar")),
        *(f"{core}.numeric._frombuffer" for core in _NUMPY_CORE),
        "numpy.ma.MaskedArray",
        "numpy.ma.core.MaskedArray",
        "numpy.ma.core._mareconstruct",
        # joblib's placeholder for an array stored beside the pickle stream
        "joblib.numpy_pickle.NumpyArrayWrapper",
        # a random state kept by a fitted estimator (random_state=RandomState(...), an MLP's optimiser)
        *(f"numpy.random._pickle.__{name}_ctor" for name in ("randomstate", "bit_generator", "generator")),
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        *(f"numpy.random._{name.lower()}.{name}" for name in ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")),
    }
)
"""The exact numpy and builtin types (and the few functions pickle uses to rebuild them) that any
model's data needs. Functions here only build arrays, scalars or bytes from data."""


class ModelFileError(SeiError, ValueError):
    """A model file that is missing, corrupt, or names a type outside the allow-list (`refused`)."""

    code = "model_file_error"

    def __init__(self, message: str, *, refused: Collection[str] = ()) -> None:
        super().__init__(message)
        self.refused = sorted(refused)


def _refusal(path: Path, names: Collection[str]) -> ModelFileError:
    return ModelFileError(
        f"model file {path} contains untrusted types: {', '.join(sorted(names))}; SEI loads only the exact "
        "classes its adapters serve (docs/security.md)",
        refused=names,
    )


def load_pickle(path: Path | str, allowed: Collection[str]) -> Any:
    """Unpickle a pickle or joblib dump at `path`, resolving only the exact `module.name`s in `allowed`."""
    file = Path(path)
    try:
        from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler
    except ImportError as exc:
        raise ModelFileError(f"model file {file} needs joblib to be read: pip install joblib ({exc})") from None
    allowed = frozenset(allowed)

    class Restricted(NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if self.proto < 3 and self.fix_imports:  # Python 2 names, mapped as pickle itself maps them
                if (module, name) in _compat_pickle.NAME_MAPPING:
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                elif module in _compat_pickle.IMPORT_MAPPING:
                    module = _compat_pickle.IMPORT_MAPPING[module]
            qualified = f"{module}.{name}"
            if "." in name or qualified not in allowed:  # a dotted name would reach attributes of an allowed one
                raise _refusal(file, [qualified])
            return super().find_class(module, name)

        def load_build(self) -> None:
            """joblib's BUILD, except that an array of objects (a nested pickle stream, which joblib < 1.6
            reads with an unrestricted pickle.load) is read by an unpickler with this `find_class`."""
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
            wrapper = self.stack[-1]
            if not isinstance(wrapper, NumpyArrayWrapper):
                return
            self.stack.pop()
            if wrapper.dtype.hasobject:
                inner = pickle._Unpickler(self.file_handle)
                inner.find_class = self.find_class  # type: ignore[method-assign]
                self.stack.append(inner.load())
            elif hasattr(self, "ensure_native_byte_order"):  # joblib >= 1.5
                self.stack.append(wrapper.read(self, self.ensure_native_byte_order))
            else:
                self.stack.append(wrapper.read(self))

        dispatch = {**NumpyUnpickler.dispatch, pickle.BUILD[0]: load_build}

    native = "ensure_native_byte_order" in inspect.signature(NumpyUnpickler.__init__).parameters

    try:
        with open(file, "rb") as raw, _joblib_stream(raw, str(file)) as stream:
            if isinstance(stream, str):  # joblib < 0.10 kept arrays in side files, loaded with np.load
                raise ModelFileError(f"model file {file} was written by joblib < 0.10, which SEI does not read")
            return (Restricted(str(file), stream, True) if native else Restricted(str(file), stream)).load()
    except ModelFileError:
        raise
    except Exception as exc:  # unpickling can raise nearly anything on a bad file
        raise ModelFileError(f"model file {file} could not be unpickled: {type(exc).__name__}: {exc}") from None


@contextmanager
def _joblib_stream(raw: IO[bytes], name: str) -> Iterator[Any]:
    """The file's pickle stream, decompressed as joblib does (its helper changed name in joblib 1.5)."""
    from joblib import numpy_pickle

    validate = getattr(numpy_pickle, "_validate_fileobject_and_memmap", None)
    if validate is not None:
        with validate(raw, name, None) as (stream, _):
            yield stream
    else:
        with numpy_pickle._read_fileobject(raw, name, None) as stream:
            yield stream


def skops_types(path: Path | str) -> set[str]:
    """Every type and function a .skops file names, whether or not skops trusts it by default."""
    path = Path(path)
    try:
        from skops.io._audit import Node, get_tree
        from skops.io._utils import get_module, read_schema
    except ImportError as exc:
        raise ModelFileError(f"model file {path} needs the 'skops' package: pip install skops ({exc})") from None
    try:
        with ZipFile(path) as archive:
            schema, context = read_schema(archive)
            root = get_tree(schema, load_context=context, trusted=None)
    except (BadZipFile, KeyError, ValueError, TypeError, OSError) as exc:
        raise ModelFileError(f"model file {path} is not a valid skops file: {type(exc).__name__}: {exc}") from None
    found: set[str] = set()
    visited: set[int] = set()
    pending: list[Any] = [root]
    while pending:
        item = pending.pop()
        if isinstance(item, Node):
            if id(item) not in visited:
                visited.add(id(item))
                found.add(f"{item.module_name}.{item.class_name}")
                pending.extend(item.children.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, type):
            found.add(f"{get_module(item)}.{item.__name__}")
        elif item is not None and not isinstance(item, (str, io.BytesIO)):
            raise ModelFileError(f"model file {path} holds a {type(item).__name__} node SEI cannot audit")
    return found


def load_skops(path: Path | str, allowed: Collection[str]) -> Any:
    """Load a .skops file whose every type is in `allowed`; refuse it, naming the others, if not."""
    path = Path(path)
    names = skops_types(path)
    refused = names - frozenset(allowed)
    if refused:
        raise _refusal(path, refused)
    import skops.io as sio

    try:
        return sio.load(path, trusted=sorted(names))
    except Exception as exc:
        raise ModelFileError(f"model file {path} could not be loaded: {type(exc).__name__}: {exc}") from None

