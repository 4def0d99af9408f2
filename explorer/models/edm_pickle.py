"""Read NVlabs EDM network pickles (``edm-*.pkl``, ``network-snapshot-*.pkl``) without running them.

An official snapshot is an ordinary Python pickle whose persistent objects carry the *source code*
of their module; the official loader ``exec``s that code. A pickle can also ask for any importable
function, so opening an untrusted file with :func:`pickle.load` can run arbitrary code. This module
opens such a file with an unpickler that knows only the few globals a network snapshot names
(listed in ``/work/shared/edm-compat/pickle_structure.md`` §4, measured from pickles the official code
wrote) and refuses every other one by name. Persistent objects become :class:`ObjectRecord`\\ s: the
class name, the module source as an inert string, and the object's state. Tensors are rebuilt from
their storages with :func:`torch.load` in ``weights_only`` mode, the same safe path torch uses.
"""
from __future__ import annotations

import collections
import io
import pickle
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional, Union

import numpy as np
import torch

PathLike = Union[str, Path]

_ZIP_MAGIC = b"PK\x03\x04"


class _Sealed(type):
    """Metaclass of the stand-in classes: a hostile BUILD opcode cannot patch them."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise ValueError(f"refusing to load: the pickle tries to change {cls.__name__}.{name}")


class ObjectRecord(metaclass=_Sealed):
    """A pickled object kept as data: class name, state and (never executed) module source.

    ``module`` is ``"persistent"`` for ``torch_utils.persistence`` objects (EDMPrecond, SongUNet, ...)
    and ``"torch.nn.ModuleDict"`` for the U-Nets' ``enc``/``dec`` containers.
    """

    __slots__ = ("class_name", "module", "module_src", "version", "state")

    def __init__(self, class_name: str, module: str, state: dict, module_src: Optional[str] = None,
                 version: Optional[int] = None) -> None:
        self.class_name = class_name
        self.module = module
        self.module_src = module_src
        self.version = version
        self.state = state

    def __setstate__(self, state: Any) -> None:
        """Only the ModuleDict stand-in is ever given state by BUILD, and only once."""
        raise ValueError("refusing to load: the pickle tries to overwrite an object's state")

    def __repr__(self) -> str:
        return f"ObjectRecord({self.class_name!r}, {len(self.state)} state entries)"

    @property
    def init_kwargs(self) -> dict:
        """Constructor keyword arguments recorded by the persistence wrapper (empty if none)."""
        kwargs = self.state.get("_init_kwargs", {})
        return dict(kwargs) if isinstance(kwargs, dict) else {}

    def children(self) -> dict[str, "ObjectRecord"]:
        """Submodules (``_modules``) in their recorded order."""
        modules = self.state.get("_modules") or {}
        if not isinstance(modules, dict):
            raise ValueError(f"{self.class_name}: '_modules' is a {type(modules).__name__}, not a dict")
        return {name: child for name, child in modules.items() if child is not None}

    def named_tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        """Parameters and buffers in ``state_dict()`` order: own parameters, own buffers, children."""
        for key in ("_parameters", "_buffers"):
            entries = self.state.get(key) or {}
            if not isinstance(entries, dict):
                raise ValueError(f"{self.class_name}: '{key}' is a {type(entries).__name__}, not a dict")
            for name, value in entries.items():
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise ValueError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
                yield prefix + name, value
        for name, child in self.children().items():
            if not isinstance(child, ObjectRecord):
                raise ValueError(f"{prefix}{name} is a {type(child).__name__}, not a network module")
            yield from child.named_tensors(prefix + name + ".")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors as a plain state dict (detached, ``requires_grad`` off)."""
        return {name: tensor.detach() for name, tensor in self.named_tensors()}


class _ModuleDictRecord(ObjectRecord):
    """Stand-in for ``torch.nn.ModuleDict``, which is pickled with NEWOBJ + BUILD, not persistence."""

    __slots__ = ()

    def __new__(cls, *args: Any) -> "_ModuleDictRecord":
        if args:
            raise ValueError("refusing to load: ModuleDict was given constructor arguments")
        record = object.__new__(cls)
        ObjectRecord.__init__(record, "ModuleDict", "torch.nn.ModuleDict", {})
        return record

    def __init__(self, *args: Any) -> None:  # state arrives later through __setstate__
        pass

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or self.state:
            raise ValueError("refusing to load: malformed ModuleDict state")
        self.state.update(state)


class _EasyDict(dict, metaclass=_Sealed):
    """``dnnlib.EasyDict`` read as a plain dict (its attribute access is not needed)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)
        elif state is not None:
            raise ValueError("refusing to load: malformed EasyDict state")


class _DtypeSpec(metaclass=_Sealed):
    """A numpy dtype as data: a type code and a byte order, enough to decode one scalar."""

    __slots__ = ("code", "byteorder")
    _CODES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if code not in self._CODES:
            raise ValueError(f"refusing to load: the pickle asks for numpy dtype {code!r}, "
                             "only numeric scalars are accepted")
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "byteorder", "=")

    def __setattr__(self, name: str, value: Any) -> None:
        raise ValueError("refusing to load: the pickle tries to modify a numpy dtype")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise ValueError("refusing to load: malformed numpy dtype state")
        object.__setattr__(self, "byteorder", state[1])


def _numpy_scalar(dtype: Any, data: Any) -> Union[float, int, bool]:
    """Decode a numpy scalar (numpy 1 or 2 spelling) as a Python number."""
    if not isinstance(dtype, _DtypeSpec) or not isinstance(data, bytes):
        raise ValueError("refusing to load: malformed numpy scalar")
    npdtype = np.dtype(dtype.code).newbyteorder(dtype.byteorder)
    if len(data) != npdtype.itemsize:
        raise ValueError("refusing to load: numpy scalar has the wrong number of bytes")
    return np.frombuffer(data, dtype=npdtype)[0].item()


def _reconstruct_persistent(meta: Any) -> ObjectRecord:
    """What ``torch_utils.persistence`` would exec and instantiate, kept as a record instead."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise ValueError("refusing to load: a persistent object has malformed metadata")
    class_name, source, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise ValueError("refusing to load: a persistent object has no valid class name")
    if not isinstance(source, str) or not isinstance(state, dict):
        raise ValueError(f"refusing to load: persistent object {class_name} has malformed state")
    version = meta.get("version")
    return ObjectRecord(class_name, "persistent", state, module_src=source,
                        version=version if isinstance(version, int) else None)


def _load_storage(data: Any) -> torch.storage.TypedStorage:
    """A storage saved with legacy ``torch.save``, read back in ``weights_only`` mode."""
    if not isinstance(data, bytes):
        raise ValueError("refusing to load: a tensor storage is not a byte string")
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged payloads
        raise ValueError(f"a tensor storage in the pickle is damaged or unsafe ({err})") from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise ValueError("a tensor payload in the pickle does not hold a storage")
    return storage


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and v >= 0 for v in value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                    hooks: Any, metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` with every argument checked, bounds included."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise ValueError("refusing to load: a tensor is not built on a storage")
    if not (isinstance(offset, int) and offset >= 0 and _is_int_tuple(size) and _is_int_tuple(stride)
            and len(size) == len(stride) and isinstance(requires_grad, bool)):
        raise ValueError("refusing to load: a tensor has a malformed layout")
    if hooks or metadata:
        raise ValueError("refusing to load: a tensor carries hooks or metadata")
    untyped = storage._untyped_storage
    numel = untyped.nbytes() // storage.dtype.itemsize
    if 0 not in size and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= numel:
        raise ValueError("refusing to load: a tensor reaches beyond its storage")
    tensor = torch.empty((0,), dtype=storage.dtype)
    return tensor.set_(untyped, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any) -> torch.nn.Parameter:
    """``torch._utils._rebuild_parameter`` for a checked tensor."""
    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool) or hooks:
        raise ValueError("refusing to load: malformed parameter")
    return torch.nn.Parameter(data, requires_grad=requires_grad)


class _Allowed(metaclass=_Sealed):
    """An allowed global as the unpickler hands it out: callable, but not patchable by BUILD."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ValueError("refusing to load: the pickle tries to modify an allowed function")

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


# Every global an EDM network snapshot names (pickle_structure.md §4), plus dnnlib's EasyDict.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Allowed(_reconstruct_persistent),
    ("torch._utils", "_rebuild_tensor_v2"): _Allowed(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Allowed(_rebuild_parameter),
    ("torch.storage", "_load_from_bytes"): _Allowed(_load_storage),
    ("torch.nn.modules.container", "ModuleDict"): _ModuleDictRecord,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy.core.multiarray", "scalar"): _Allowed(_numpy_scalar),
    ("numpy._core.multiarray", "scalar"): _Allowed(_numpy_scalar),
    ("numpy", "dtype"): _DtypeSpec,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
}


# Bounds on what a pickle can make the reader do (docs/files.md). A released EDM network pickle uses
# well under a tenth of each: ~10⁵ opcodes, ~10⁵ memo entries, containers of a few hundred entries,
# nesting ~30 deep, and as many storage bytes as the file holds.
MAX_OPCODES = 20_000_000
MAX_MEMO = 2_000_000
MAX_CONTAINER = 100_000
MAX_DEPTH = 100
MAX_OBJECTS = 2_000_000
MAX_STORAGE_BYTES = 16 * 1024**3
MAX_SECONDS = 60.0
_SAFE_INT = 2**61 - 1  # ints below this have distinct hashes: no hash-collision construction


class _Budget:
    """What one load may still spend: opcodes, time, and bytes made by allowed functions."""

    def __init__(self, byte_limit: int) -> None:
        self.opcodes = 0
        self.deadline = time.monotonic() + MAX_SECONDS
        self.spent: dict[str, int] = {}
        self.byte_limit = byte_limit

    def spend_bytes(self, n: int, what: str) -> None:
        """Each kind of made bytes (byte strings, tensor storage) may total at most the file's size."""
        self.spent[what] = self.spent.get(what, 0) + n
        if self.spent[what] > self.byte_limit:
            raise ValueError(f"refusing to load: the pickle makes more than {self.byte_limit:,} bytes of {what} "
                             "(more than the file holds)")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ValueError(f"refusing to load: reading the pickle took longer than {MAX_SECONDS:g} s")


def _check_key(value: Any, where: str) -> None:
    """Dict keys and set members are plain values whose hashes cannot be made to collide."""
    if value is None or isinstance(value, (str, bool)):
        return
    if type(value) is int and -_SAFE_INT < value < _SAFE_INT:
        return
    raise ValueError(f"refusing to load: {where} has a {type(value).__name__} key or member; an EDM network "
                     "pickle uses only strings, small integers, booleans and None there")


def _check_size(size: int, what: str) -> None:
    if size > MAX_CONTAINER:
        raise ValueError(f"refusing to load: a {what} with more than {MAX_CONTAINER:,} entries")


def _plain_set(factory: type) -> Callable[..., Any]:
    """``builtins.set``/``frozenset`` as protocol 2/3 pickles call them: of plain values only."""
    def make(*args: Any) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
            raise ValueError(f"refusing to load: {factory.__name__} called with unexpected arguments")
        items = args[0] if args else ()
        _check_size(len(items), factory.__name__)
        for item in items:
            _check_key(item, f"a {factory.__name__}")
        return factory(items)
    return make


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    """``OrderedDict()``: pickles fill it with SETITEMS afterwards, whose keys are checked."""
    if args:
        raise ValueError("refusing to load: OrderedDict called with arguments")
    return collections.OrderedDict()


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()``: how protocol 2 writes an empty byte string."""
    if args:
        raise ValueError("refusing to load: bytes called with arguments")
    return b""


def _latin1_bytes(budget: _Budget) -> Callable[..., bytes]:
    """``_codecs.encode(text, 'latin1')``: how protocol 2 writes a byte string."""
    def encode(text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
        if rest or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise ValueError("refusing to load: _codecs.encode called with unexpected arguments")
        budget.spend_bytes(len(text), "byte strings")
        return text.encode("latin1")
    return encode


def _allowed_globals(budget: _Budget) -> dict[tuple[str, str], Any]:
    """The allowed globals of one load; the byte-making ones charge its budget."""
    def load_storage(data: Any) -> torch.storage.TypedStorage:
        budget.spend_bytes(len(data) if isinstance(data, bytes) else 0, "tensor storage")
        return _load_storage(data)

    allowed = dict(_ALLOWED)
    allowed[("torch.storage", "_load_from_bytes")] = _Allowed(load_storage)
    allowed[("collections", "OrderedDict")] = _Allowed(_ordered_dict)
    for module in ("builtins", "__builtin__"):
        allowed[(module, "set")] = _Allowed(_plain_set(set))
        allowed[(module, "frozenset")] = _Allowed(_plain_set(frozenset))
        allowed[(module, "bytes")] = _Allowed(_empty_bytes)
    allowed[("_codecs", "encode")] = _Allowed(_latin1_bytes(budget))
    return allowed


class _BoundedReader:
    """A file that refuses reads longer than what is left of it (a length field cannot make us allocate)."""

    def __init__(self, stream: BinaryIO, label: str) -> None:
        self.stream = stream
        start = stream.tell()
        self.left = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.left
        if n > self.left:
            raise ValueError(f"the file is truncated or damaged: the pickle claims {n:,} more bytes, but only "
                             f"{self.left:,} are left")
        data = self.stream.read(n)
        self.left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        line = self.stream.readline(min(self.left, 1 << 20))
        self.left -= len(line)
        return line


def _counted(step: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(self: "RestrictedUnpickler") -> None:
        budget = self.budget
        budget.opcodes += 1
        if budget.opcodes > MAX_OPCODES:
            raise ValueError(f"refusing to load: the pickle runs more than {MAX_OPCODES:,} opcodes")
        if not budget.opcodes & 0x3FFF:
            budget.check_time()
            if len(self.stack) > 2 * MAX_CONTAINER:  # items piling up for one SETITEMS/APPENDS
                raise ValueError(f"refusing to load: a container with more than {MAX_CONTAINER:,} entries")
        step(self)
    return run


def _marked(kind: str, keyed: bool = False, target: bool = False) -> Callable[..., Callable[[Any], None]]:
    """A check of the items above the last MARK (and of the container they are added to)."""
    def wrap(step: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(self: "RestrictedUnpickler") -> None:
            items = self.stack
            into = self.metastack[-1][-1] if target and self.metastack and self.metastack[-1] else None
            existing = len(into) if isinstance(into, (dict, list, set)) else 0
            _check_size(existing + (len(items) // 2 if keyed == "pairs" else len(items)), kind)
            if keyed:
                for key in (items[0::2] if keyed == "pairs" else items):
                    _check_key(key, f"a {kind}")
            step(self)
            self.note_depth(into if target else self.stack[-1], items)
        return run
    return wrap


def _single(kind: str, depth: int, keyed: bool) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """A check of APPEND/SETITEM: the container sits ``depth`` below the top of the stack."""
    def wrap(step: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(self: "RestrictedUnpickler") -> None:
            items: list = []
            if len(self.stack) >= depth:
                into = self.stack[-depth]
                if isinstance(into, (dict, list, set)):
                    _check_size(len(into) + 1, kind)
                if keyed:
                    _check_key(self.stack[-2], f"a {kind}")
                items = self.stack[-depth + 1:]
            step(self)
            if len(self.stack) >= 1 and len(items) == depth - 1:
                self.note_depth(self.stack[-1], items)
        return run
    return wrap


def _tuple_n(step: Callable[[Any], None]) -> Callable[[Any], None]:
    """TUPLE1/2/3 nest without a MARK: note the new tuple's depth."""
    def run(self: "RestrictedUnpickler") -> None:
        step(self)
        self.note_depth(self.stack[-1], self.stack[-1])
    return run


def _checked_dispatch() -> dict[int, Callable[[Any], None]]:
    base = pickle._Unpickler.dispatch  # the pure-Python unpickler: every opcode passes through Python here
    table = dict(base)
    checks = {
        pickle.SETITEMS: _marked("dict", keyed="pairs", target=True),
        pickle.DICT: _marked("dict", keyed="pairs"),
        pickle.APPENDS: _marked("list", target=True),
        pickle.LIST: _marked("list"),
        pickle.TUPLE: _marked("tuple"),
        pickle.ADDITEMS: _marked("set", keyed=True, target=True),
        pickle.FROZENSET: _marked("frozenset", keyed=True),
        pickle.SETITEM: _single("dict", 3, keyed=True),
        pickle.APPEND: _single("list", 2, keyed=False),
    }
    for opcode, check in checks.items():
        table[opcode[0]] = check(base[opcode[0]])
    for opcode in (pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3):
        table[opcode[0]] = _tuple_n(base[opcode[0]])

    def mark(self: "RestrictedUnpickler") -> None:
        if len(self.metastack) >= MAX_DEPTH:
            raise ValueError(f"refusing to load: nesting deeper than {MAX_DEPTH} levels")
        base[pickle.MARK[0]](self)

    def memo_check(step: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(self: "RestrictedUnpickler") -> None:
            if len(self.memo) >= MAX_MEMO:
                raise ValueError(f"refusing to load: the pickle keeps more than {MAX_MEMO:,} objects in its memo")
            step(self)
        return run

    table[pickle.MARK[0]] = mark
    for opcode in (pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT, pickle.MEMOIZE):
        table[opcode[0]] = memo_check(base[opcode[0]])
    return {key: _counted(step) for key, step in table.items()}


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the globals of an EDM network pickle and refuses the rest.

    It is the pure-Python unpickler with every opcode counted and checked: the bounds above
    (opcodes, memo entries, container sizes, nesting, bytes made, time) are enforced while the
    file is read, before any of them can be exceeded, so no pickle can make it hang or fill memory.
    """

    dispatch = _checked_dispatch()

    def __init__(self, stream: BinaryIO, label: str = "the stream", byte_limit: int = MAX_STORAGE_BYTES) -> None:
        reader = _BoundedReader(stream, label)
        super().__init__(reader)
        self.budget = _Budget(min(byte_limit, MAX_STORAGE_BYTES))
        self._allowed = _allowed_globals(self.budget)
        self._depths: dict[int, tuple[Any, int]] = {}  # id -> (container, nesting seen so far), kept alive

    def note_depth(self, container: Any, items: Any) -> None:
        """Nesting as it is built, so a deep chain is refused at level 101, not after loading it all.

        A lower bound (a container filled after it was nested is not propagated upwards);
        :func:`check_structure` gives the exact answer once the load is done.
        """
        if not isinstance(container, (list, dict, tuple, set, frozenset)):
            return
        depths = self._depths
        values = items.values() if isinstance(items, dict) else items
        level = 1 + max((depths[id(v)][1] if id(v) in depths else _is_container(v) for v in values), default=0)
        if level > MAX_DEPTH:
            raise ValueError(f"refusing to load: nesting deeper than {MAX_DEPTH} levels")
        entry = depths.get(id(container))
        if level > 1 and (entry is None or entry[1] < level):
            depths[id(container)] = (container, level)

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._allowed.get((module, name))
        if allowed is None:
            raise ValueError(f"refusing to load: the pickle asks for {module}.{name}, which an EDM "
                             "network pickle never contains (loading it could run code)")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise ValueError("refusing to load: the pickle refers to external objects (persistent ids)")

    def load(self) -> Any:
        result = super().load()
        check_structure(result, self.budget)
        return result


def _contents(value: Any) -> Iterator[Any]:
    """The values a reader may walk into (tensors, strings and numbers are leaves)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield item
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from value
    elif isinstance(value, ObjectRecord):
        yield value.state


def _is_container(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple, set, frozenset, ObjectRecord))


def check_structure(root: Any, budget: Optional[_Budget] = None) -> None:
    """Refuse a loaded object that is too deep or too big *as a tree* (shared parts counted each time).

    Readers of the result recurse through it (module trees, kwargs), so nesting beyond
    :data:`MAX_DEPTH` (a cycle is infinite nesting) or a tree of more than :data:`MAX_OBJECTS`
    nodes (a "billion laughs": lists of references to lists of references ...) is refused by name.
    Sizes and depths are memoised per object, so the check costs one pass over the distinct objects.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    steps = 0
    while stack:
        value, finished = stack.pop()
        key = id(value)
        steps += 1
        if budget is not None and not steps & 0x3FFF:
            budget.check_time()
        if finished:
            kids = [k for k in _contents(value) if _is_container(k)]
            leaves = sum(1 for _ in _contents(value)) - len(kids)
            size[key] = 1 + leaves + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if size[key] > MAX_OBJECTS:
                raise ValueError(f"refusing to load: the pickle reaches more than {MAX_OBJECTS:,} objects "
                                 "(shared parts counted each time)")
            if depth[key] > MAX_DEPTH:
                raise ValueError(f"refusing to load: nesting deeper than {MAX_DEPTH} levels")
            continue
        if key in size or not _is_container(value):
            continue
        if key in on_path:
            raise ValueError(f"refusing to load: nesting deeper than {MAX_DEPTH} levels (an object contains itself)")
        on_path.add(key)
        stack.append((value, True))
        stack.extend((k, False) for k in _contents(value) if _is_container(k))


_OWN_MESSAGES = ("refusing to load", "the file is truncated", "a tensor", "a persistent", "ModuleDict",
                 "EasyDict")


def _describe(path: PathLike) -> str:
    return Path(path).name


def read_pickle(source: Union[PathLike, BinaryIO]) -> Any:
    """Unpickle a file (or binary stream) with :class:`RestrictedUnpickler`.

    Raises ValueError for anything that is not a complete, safe pickle, or one over a bound; the
    message names the file and, for refused globals, the global, or the bound.
    """
    if isinstance(source, (str, Path)):
        try:
            stream = open(source, "rb")
        except OSError as err:
            raise ValueError(f"Cannot open {source}: {err.strerror or err}.") from None
        with stream:
            return _read_stream(stream, _describe(source))
    return _read_stream(source, "the stream")


def _read_stream(stream: BinaryIO, label: str) -> Any:
    head = stream.read(4)
    stream.seek(-len(head), io.SEEK_CUR)
    if head.startswith(_ZIP_MAGIC):
        raise ValueError(f"{label} is a zip archive (a torch.save file such as training-state-*.pt?), "
                         "not an EDM network pickle")
    if len(head) < 2 or head[0] != 0x80:
        raise ValueError(f"{label} is not a Python pickle (an EDM network pickle starts with protocol 2+)")
    start = stream.tell()
    size = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    try:
        return RestrictedUnpickler(stream, label, byte_limit=size).load()
    except ValueError as err:
        if not str(err).startswith(_OWN_MESSAGES):  # pickle's own parsing of a malformed opcode argument
            raise ValueError(f"{label} is truncated or damaged: cannot read it as a pickle (a malformed opcode "
                             f"argument: {err})") from None
        raise ValueError(f"{label}: {err}") from None
    except EOFError:
        raise ValueError(f"{label} is truncated or damaged: the pickle ends before its last opcode") from None
    except Exception as err:  # UnpicklingError, TypeError, KeyError (bad memo), ...: all mean a bad file
        raise ValueError(f"{label} is truncated or damaged: cannot read it as a pickle ({type(err).__name__}: {err})") from None


def read_edm_snapshot(source: Union[PathLike, BinaryIO]) -> dict:
    """Read an EDM snapshot and check its shape: a dict whose ``'ema'`` is a persistent network."""
    label = _describe(source) if isinstance(source, (str, Path)) else "the stream"
    data = read_pickle(source)
    if not isinstance(data, dict):
        raise ValueError(f"{label} holds a {type(data).__name__}, not the dict of an EDM network snapshot")
    if "ema" not in data:
        keys = ", ".join(repr(k) for k in list(data)[:8]) or "none"
        raise ValueError(f"{label} has no 'ema' network (keys: {keys}); is it an EDM network snapshot?")
    ema = data["ema"]
    if not isinstance(ema, ObjectRecord) or ema.module != "persistent":
        raise ValueError(f"{label}: 'ema' is a {type(ema).__name__}, not a persistent EDM network")
    return data
