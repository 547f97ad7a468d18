"""Read Lightning-1.0-era taming `.ckpt` files without running code from them.

Those files do not load with `torch.load(weights_only=True)`: besides tensors they pickle
Lightning classes (the `callbacks` dict is keyed by callback classes) and sometimes config
objects. `torch.load(weights_only=False)` would import and call whatever the pickle names,
which is how a malicious checkpoint runs a shell command. This reader instead:

- rebuilds tensors itself, lazily: a tensor is a `LazyTensor` (shape, dtype) until
  `materialize`, so the converter reads sizes without loading 8 GB of optimizer state;
- calls only a small allow-list: `collections.OrderedDict`, plain builtin value types (`dict`,
  `list`, `set`, `int`, ...), and its own tensor/parameter rebuilders standing in for torch's;
- stands an inert `Placeholder` in for any other class or function of a known library
  (Lightning, OmegaConf, NumPy, torch, taming, argparse, copyreg, collections ...): creating or
  "calling" one only records the arguments, nothing runs;
- refuses (`UnsafeCheckpointError`) any global from elsewhere (`os.system`, `builtins.eval`,
  `subprocess.*`, ...): such a file is not a checkpoint.

Both torch formats are read: the zip format (torch >= 1.6, `<name>/data.pkl` +
`<name>/data/<key>`) and the legacy one (magic number, protocol, sys info, the object,
storage keys, then raw storages). Storages are little-endian.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch

from deid.errors import BadInputError, DeidError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Libraries whose names may appear in a training checkpoint; they become inert placeholders.
INERT_ROOTS = frozenset(
    {
        "pytorch_lightning",
        "lightning",
        "lightning_fabric",
        "omegaconf",
        "numpy",
        "argparse",
        "copyreg",
        "collections",
        "torch",
        "taming",
        "main",
        "typing",
        "functools",
        "enum",
        "datetime",
        "pathlib",
        "_codecs",  # protocol-2 pickles of bytes (e.g. inside NumPy scalars)
    }
)
# Builtins that only build plain values (config objects pickle references to dict, list ...).
SAFE_BUILTINS: dict[str, Callable[..., Any]] = {
    t.__name__: t
    for t in (set, frozenset, slice, complex, dict, list, tuple, str, int, float, bool, bytes)
}


class UnsafeCheckpointError(DeidError):
    """The pickle names a global outside the allow-list: refused, nothing was called."""


class Placeholder:
    """Stands in for a class or function the checkpoint only names; never runs anything.

    Subclasses are made per global (`placeholder_class`), so a class used as a dict key
    (Lightning's `callbacks`) stays a distinct, hashable key. Instances record their
    constructor arguments, pickled state, items and list entries.
    """

    qualname: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, entries=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        return type(self)(*args, **kwargs)  # "calling" an inert object gives another one

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["entries"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["entries"].extend(values)

    def __repr__(self) -> str:
        return f"<placeholder {self.qualname}>"


_PLACEHOLDERS: dict[str, type[Placeholder]] = {}


def placeholder_class(module: str, name: str) -> type[Placeholder]:
    """The one inert stand-in class for global `module.name`."""
    qualname = f"{module}.{name}"
    if qualname not in _PLACEHOLDERS:
        cls = type(name, (Placeholder,), {"qualname": qualname, "__module__": __name__})
        _PLACEHOLDERS[qualname] = cls
    return _PLACEHOLDERS[qualname]


@dataclass(frozen=True)
class StorageRef:
    """A storage of the file, not read yet."""

    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    """A tensor of the file: its shape and dtype are known, its data is read on demand."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.size)

    @property
    def dtype(self) -> torch.dtype:
        return self.storage.dtype

    def numel(self) -> int:
        n = 1
        for s in self.size:
            n *= s
        return n


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> torch.dtype:
        return STORAGE_DTYPES[self.name]


def _rebuild_tensor(
    storage: StorageRef, offset: int, size: tuple, stride: tuple, *_: Any
) -> LazyTensor:
    if not isinstance(storage, StorageRef):
        raise UnsafeCheckpointError("a tensor in the checkpoint has no storage of the file")
    return LazyTensor(
        storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data: LazyTensor, *_: Any) -> LazyTensor:
    return data


_TORCH_REBUILDERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "Size"): torch.Size,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals are the allow-list, placeholders, or a refusal."""

    def __init__(self, file: BinaryIO, source: str, persistent: Callable[[Any], Any] | None):
        super().__init__(file)
        self.source = source
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names in protocol-2 pickles (`__builtin__`, `copy_reg`), as pickle maps them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _TORCH_REBUILDERS:
            return _TORCH_REBUILDERS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "builtins" and name in SAFE_BUILTINS:
            return SAFE_BUILTINS[name]
        if module.split(".")[0] in INERT_ROOTS:
            return placeholder_class(module, name)
        raise UnsafeCheckpointError(
            f"refusing to read {self.source}: its pickle names {module}.{name}, which no "
            "checkpoint needs (only tensors and plain containers are rebuilt; nothing was run)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafeCheckpointError(
                f"{self.source}: unexpected persistent id in a header pickle"
            )
        return self._persistent(pid)


def _storage_ref(pid: Any, source: str) -> StorageRef:
    """('storage', type, key, location, numel[, view metadata]) -> StorageRef."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise UnsafeCheckpointError(f"{source}: unsupported persistent id {pid!r:.80}")
    kind = pid[1]
    if not isinstance(kind, _StorageType):
        raise UnsafeCheckpointError(f"{source}: unsupported storage type {kind!r}")
    if len(pid) > 5 and pid[5] is not None:
        raise DeidError(f"{source}: storage views of the pre-1.0 format are not supported")
    return StorageRef(str(pid[2]), kind.dtype, int(pid[4]))


class OfficialCheckpoint:
    """An opened checkpoint: `payload` (plain containers, `LazyTensor`s, placeholders).

    Use as a context manager; `materialize(x)` turns a LazyTensor (or a container of them)
    into real tensors, reading only those storages.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(self.path, "no such checkpoint file")
        self._cache: dict[str, torch.Tensor] = {}
        self._refs: dict[str, StorageRef] = {}
        self._zip: zipfile.ZipFile | None = None
        self._file: BinaryIO | None = None
        self._offsets: dict[str, int] = {}
        if zipfile.is_zipfile(self.path):
            self.payload = self._open_zip()
        else:
            self.payload = self._open_legacy()

    # -------------------------------------------------------------- formats
    def _remember(self, pid: Any) -> StorageRef:
        ref = _storage_ref(pid, str(self.path))
        self._refs.setdefault(ref.key, ref)
        return ref

    def _open_zip(self) -> Any:
        self._zip = zipfile.ZipFile(self.path)
        pickles = [n for n in self._zip.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise BadInputError(self.path, "not a torch checkpoint (zip without one data.pkl)")
        self._prefix = pickles[0][: -len("data.pkl")]
        order = self._prefix + "byteorder"
        if order in self._zip.namelist() and self._zip.read(order).strip() != b"little":
            raise BadInputError(self.path, "big-endian checkpoints are not supported")
        data = io.BytesIO(self._zip.read(pickles[0]))
        return RestrictedUnpickler(data, str(self.path), self._remember).load()

    def _open_legacy(self) -> Any:
        handle = open(self.path, "rb")  # noqa: SIM115 - kept open for lazy reads, closed in close()
        self._file = handle
        source = str(self.path)
        try:
            magic = RestrictedUnpickler(handle, source, None).load()
        except UnsafeCheckpointError:
            raise
        except Exception as err:
            raise BadInputError(self.path, f"not a torch checkpoint ({err})") from None
        if magic != LEGACY_MAGIC:
            raise BadInputError(
                self.path, "not a torch checkpoint (no zip, no legacy magic number)"
            )
        RestrictedUnpickler(handle, source, None).load()  # protocol version
        info = RestrictedUnpickler(handle, source, None).load()
        if isinstance(info, dict) and info.get("little_endian") is False:
            raise BadInputError(self.path, "big-endian checkpoints are not supported")
        payload = RestrictedUnpickler(handle, source, self._remember).load()
        keys = RestrictedUnpickler(handle, source, None).load()
        if not isinstance(keys, list):
            raise BadInputError(self.path, "legacy checkpoint without a storage key list")
        for key in keys:
            ref = self._refs.get(str(key))
            if ref is None:
                raise BadInputError(self.path, f"legacy storage {key} is not used by the payload")
            (numel,) = struct.unpack("<q", handle.read(8))
            self._offsets[str(key)] = handle.tell()
            handle.seek(numel * torch.empty((), dtype=ref.dtype).element_size(), io.SEEK_CUR)
        return payload

    # -------------------------------------------------------------- data
    def _read_storage(self, ref: StorageRef) -> torch.Tensor:
        """The storage's bytes as a 1-D tensor, read straight into one buffer (no extra copy)."""
        nbytes = ref.numel * torch.empty((), dtype=ref.dtype).element_size()
        if nbytes == 0:
            return torch.empty(0, dtype=ref.dtype)
        buffer = bytearray(nbytes)
        view, filled = memoryview(buffer), 0
        if self._zip is not None:
            handle: Any = self._zip.open(f"{self._prefix}data/{ref.key}")
        else:
            assert self._file is not None
            handle = self._file
            handle.seek(self._offsets[ref.key])
        try:
            while filled < nbytes:
                count = handle.readinto(view[filled:])
                if not count:
                    raise BadInputError(self.path, f"storage {ref.key} is truncated")
                filled += count
        finally:
            if self._zip is not None:
                handle.close()
        return torch.frombuffer(buffer, dtype=ref.dtype)

    def materialize(self, value: Any) -> Any:
        """LazyTensor -> a real contiguous tensor; containers are walked; others returned.

        A tensor that is its whole storage (the usual case) is returned without a copy;
        storages shared by several tensors are read once and kept until `close`.
        """
        if isinstance(value, LazyTensor):
            ref = value.storage
            whole = value.offset == 0 and value.numel() == ref.numel
            contiguous = torch.empty(value.size, device="meta").stride() == value.stride
            if whole and contiguous and ref.key not in self._cache:
                return self._read_storage(ref).view(value.size)
            if ref.key not in self._cache:
                self._cache[ref.key] = self._read_storage(ref)
            base = self._cache[ref.key]
            return torch.as_strided(base, value.size, value.stride, value.offset).clone()
        if isinstance(value, dict):
            return type(value)((k, self.materialize(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(self.materialize(v) for v in value)
        return value

    def close(self) -> None:
        self._cache.clear()
        if self._zip is not None:
            self._zip.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> OfficialCheckpoint:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
