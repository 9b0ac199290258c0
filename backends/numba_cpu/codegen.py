"""Generated modules: kernel and driver sources written to the kernel cache and imported.

Every kernel is a module of its own, named after the hash of its source and signature, in a
cache directory keyed by the numba, llvmlite and Python versions (`$KILN_CACHE_DIR` or
`~/.cache/kiln`) and by a digest of the intrinsics they link against. Functions carry an explicit signature and `cache=True`, so importing a module
compiles it once and later processes load the machine code from numba's cache beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import llvmlite
import numba

from ..lowering import Kernel, Program, Slot
from ..templating import FASTMATH_FLAGS, NP_NAMES, fastmath_option

HEADER = """\
import math
import numpy as np
from numba import carray, cfunc, get_thread_id, njit, prange, types
from kiln.backends.numba_cpu.launch import address_as_voidptr, launch_parallel, launch_serial
from kiln.backends.numba_cpu.simd import vadd, vbroadcast, vfma, vlane, vload, vmax, vmin, vmul, vsigmoid, vsplat, vstore, vsub, vsum, vzero
"""

NUMBA_TYPES = {"f16": "float16", "f32": "float32", "f64": "float64", "i8": "int8", "u8": "uint8",
               "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32", "i64": "int64",
               "u64": "uint64", "bool": "boolean"}


@functools.cache
def _library_digest() -> str:
    """A digest of the code every kernel module links against (the SIMD intrinsics, the launcher)
    and of the fastmath flags: numba's cache checks a module's own source only, so a change to
    these must lead to a cache of its own, not to stale machine code."""
    h = hashlib.sha1(FASTMATH_FLAGS.encode())
    for name in ("simd.py", "launch.py"):
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:8]


def cache_root() -> Path:
    """Where kiln keeps its kernel caches: `$KILN_CACHE_DIR`, else ~/.cache/kiln."""
    return Path(os.environ.get("KILN_CACHE_DIR") or Path.home() / ".cache" / "kiln")


CACHE_PREFIX = "numba"  # every cache folder kiln makes under the root: numba<version>-llvmlite...


def cache_folders() -> list[Path]:
    """kiln's cache folders under the root, one per (numba, llvmlite, Python, intrinsics) version."""
    root = cache_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(CACHE_PREFIX))


def folder_usage(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`."""
    files = [f for f in path.rglob("*") if f.is_file()]
    return len(files), sum(f.stat().st_size for f in files)


def cache_tag() -> str:
    """This kiln's cache folder name: numba, llvmlite and Python versions, intrinsics digest."""
    return f"{CACHE_PREFIX}{numba.__version__}-llvmlite{llvmlite.__version__}-py{sys.version_info[0]}" \
        f"{sys.version_info[1]}-{_library_digest()}"


class CacheWarning(UserWarning):
    """A kernel-cache entry or folder kiln could not use; it worked around it and says how."""


@functools.cache
def _fallback(root: str, why: str) -> Path:
    """A temporary cache for this process, when the configured one cannot be written (warned once)."""
    tmp = Path(tempfile.mkdtemp(prefix="kiln-cache-"))
    warnings.warn(f"the kernel cache folder {root} is unusable ({why}); this process caches its kernels in "
                  f"{tmp} instead, which is not kept. Set KILN_CACHE_DIR to a writable folder.", CacheWarning,
                  stacklevel=3)
    return tmp


FOLDER: Path | None = None  # set in compile workers: the folder their parent chose


def cache_dir() -> Path:
    if FOLDER is not None:
        return FOLDER
    path = cache_root() / cache_tag()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as e:
        path = _fallback(str(cache_root()), f"{type(e).__name__}: {e.strerror or e}") / cache_tag()
        path.mkdir(parents=True, exist_ok=True)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return path


def signature(dtypes) -> str:
    return "void(" + ", ".join(f"{NUMBA_TYPES[d]}[::1]" for d in dtypes) + ")"


def kernel_source(k: Kernel) -> str:
    if k.jobs:
        return _job_kernel_source(k)
    deco = (f"@njit({signature(k.arg_dtypes)!r}, cache=True, nogil=True, parallel={k.parallel}, "
            f"fastmath={fastmath_option(k.fastmath)}, error_model='numpy', boundscheck=False)")
    body = k.body.rstrip().replace(f"def {k.name}(", f"{deco}\ndef {k.name}(", 1)
    return f"# kiln kernel: {k.note}\n{HEADER}\n\n{body}\n"


JOB_SIGNATURE = "types.void(types.CPointer(types.int64), types.int64)"


def _job_kernel_source(k: Kernel) -> str:
    """A job kernel: its serial job function, and a C callback `void name(int64 *argv, int64 job)`
    (argv: address and element count of each array) that the launcher calls by address."""
    opts = f"cache=True, nogil=True, fastmath={fastmath_option(k.fastmath)}, error_model='numpy', boundscheck=False"
    body = k.body.rstrip().replace(f"def {k.name}_job(", f"@njit({opts})\ndef {k.name}_job(", 1)
    head = k.body[k.body.index(f"def {k.name}_job("):]
    names = [a.strip() for a in head[head.index("(") + 1:head.index(")")].split(",")][:-1]  # less `job`
    callback = [f"@cfunc({JOB_SIGNATURE}, {opts})", f"def {k.name}(argv, job):"]
    callback += [f"    {a} = carray(address_as_voidptr(argv[{2 * i}]), (argv[{2 * i + 1}],), {NP_NAMES[d]})"
                 for i, (a, d) in enumerate(zip(names, k.arg_dtypes, strict=True))]
    callback.append(f"    {k.name}_job({', '.join(names)}, job)")
    jobs = f"jobs run {'in parallel' if k.parallel else 'serially'}"
    return f"# kiln kernel: {k.note}\n# {jobs} through the shared launcher\n{HEADER}\n\n{body}\n\n\n" + \
        "\n".join(callback) + "\n"


def _write(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return  # unchanged: keep its timestamp so numba's cache stays valid
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_module(name: str, text: str) -> Path:
    path = cache_dir() / f"{name}.py"
    _write(path, text)
    return path


def is_compiled(name: str) -> bool:
    """True when numba's cache holds machine code for module `name` (an index file exists)."""
    pycache = cache_dir() / "__pycache__"
    return any(pycache.glob(f"{name}.*.nbi"))


# -- self-healing: every entry's machine code checked against the checksum taken when it loaded first
SUM_SUFFIX = ".kiln-sha256"


def _entry_files(name: str) -> list[Path]:
    """numba's index and machine code for module `name`."""
    pycache = cache_dir() / "__pycache__"
    return sorted([*pycache.glob(f"{name}.*.nbi"), *pycache.glob(f"{name}.*.nbc")])


def _sum_path(name: str) -> Path:
    return cache_dir() / "__pycache__" / f"{name}{SUM_SUFFIX}"


def _digest(files: list[Path]) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _checksum_ok(name: str) -> bool:
    """False when the entry's files differ from the checksum recorded for them."""
    try:
        want = json.loads(_sum_path(name).read_text())
    except FileNotFoundError:
        return True  # not recorded yet: recorded once it loads
    except (OSError, ValueError):
        return False
    try:
        return want == _digest(_entry_files(name))
    except OSError:
        return False


def _record(name: str) -> None:
    recorded = _sum_path(name)
    files = _entry_files(name)
    if recorded.exists() or not files:
        return
    with contextlib.suppress(OSError):
        _write(recorded, json.dumps(_digest(files)))


def _heal(name: str, why: str) -> None:
    """Delete a bad entry (machine code, index, bytecode, checksum) so that it is built again."""
    pycache = cache_dir() / "__pycache__"
    warnings.warn(f"kernel cache entry {name} in {pycache} was unusable ({why}); deleted, rebuilding it",
                  CacheWarning, stacklevel=3)
    for f in pycache.glob(f"{name}.*"):
        if f.suffix != ".lock":  # the lock stays: another process may be waiting on it
            with contextlib.suppress(OSError):
                f.unlink()
    sys.modules.pop(name, None)
    importlib.invalidate_caches()


@contextlib.contextmanager
def _entry_lock(name: str):
    """One process at a time builds, checks or records an entry (processes sharing a cache would
    otherwise each write their own, not byte-identical, machine code over the others')."""
    pycache = cache_dir() / "__pycache__"
    pycache.mkdir(exist_ok=True)
    with open(pycache / f"{name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load(name: str):
    """Import (and so compile, or load from numba's cache) kernel module `name`, healing a cache
    entry that fails its checksum or cannot be read."""
    if name in sys.modules:
        return sys.modules[name]
    with _entry_lock(name):
        return _load_locked(name)


def _load_locked(name: str):
    if not _checksum_ok(name):
        _heal(name, "its machine code does not match the checksum recorded when it was built")
    try:
        module = importlib.import_module(name)
    except numba.core.errors.NumbaError:
        raise  # the kernel's own source does not compile: not the cache's doing
    except Exception as e:  # noqa: BLE001 - a truncated or garbled entry fails in pickle, marshal or numba
        _heal(name, f"{type(e).__name__}: {e}")
        module = importlib.import_module(name)
    _record(name)
    return module


# -- the driver: the whole launch list in one compiled function -------------------------------------
def job_launches(p: Program) -> list:
    """The launches of job kernels, in order: row i of the driver's job table is the i-th."""
    return [launch for launch in p.launches if p.kernels[launch.kernel].jobs]


def _view(arena: str, s: Slot) -> str:
    return f"{arena}[{s.offset}:{s.offset + s.size}]"


# Launches per driver function. numba links every kernel a driver calls into the driver's module
# and LLVM optimises the whole of it again, which grows faster than the launch count: a single
# driver for DenseNet-121's ~900 launches (about 60 distinct kernels) compiled in over 6 minutes
# here, ConvNeXt-Tiny's ~350 in ~3. Cut into parts of this many launches, each part is one
# compiled function over the same arguments (compiled in the worker processes like kernels),
# called in order; a program of up to this many launches keeps one driver and no Python between.
DRIVER_PART = 64


def driver_sources(p: Program, param_slots: dict[str, Slot]) -> tuple[list[str], list[str]]:
    """The driver parts' sources (each names its function DRIVER, to be renamed) and the
    argument names they all take."""
    parts = [p.launches[i:i + DRIVER_PART] for i in range(0, len(p.launches), DRIVER_PART)] or [[]]
    texts = []
    args: list[str] = []
    for k, part in enumerate(parts):
        text, args = driver_source(p, param_slots, "DRIVER", part, f"part {k + 1} of {len(parts)}, " if len(parts) > 1 else "")
        texts.append(text)
    return texts, args


def driver_source(p: Program, param_slots: dict[str, Slot], name: str, launches=None,
                  what: str = "") -> tuple[str, list[str]]:
    """Source of `run(arenas..., weights..., externals...)` calling the kernels of `launches`
    (default: every launch) in order; returns the source and the argument names: arena_<dtype>,
    weights_<dtype>, the job table, then x0, x1, ... for the program's external values (graph
    inputs, then outputs), in that order."""
    launches = p.launches if launches is None else launches
    arena_args = [f"arena_{d}" for d in sorted(p.arena_sizes)]
    weight_args = sorted({f"weights_{s.dtype}" for s in param_slots.values()})
    ext = {v: f"x{i}" for i, v in enumerate(p.external)}
    jobs = job_launches(p)
    job_args = ["job_fns", "job_argv"] if jobs else []
    args = arena_args + weight_args + job_args + list(ext.values())
    types = p.graph.values
    fixed = [f"{NUMBA_TYPES[a.split('_', 1)[1]]}[::1]" for a in arena_args + weight_args]
    table = ["int64[::1]", "int64[:, ::1]"] if jobs else []
    sig = "void(" + ", ".join([*fixed, *table, *(f"{NUMBA_TYPES[types[v].type.dtype]}[::1]" for v in ext)]) + ")"

    def ref(value: str) -> str:
        if value in ext:
            return ext[value]
        if value in p.slots:
            return _view(f"arena_{p.slots[value].dtype}", p.slots[value])
        s = param_slots[value]
        return _view(f"weights_{s.dtype}", s)

    imports = [f"from {k} import {k}" for k in sorted({launch.kernel for launch in launches})
               if not p.kernels[k].jobs]
    lines = [f"# kiln driver for graph {p.graph.name!r}: {what}{len(launches)} launches", HEADER, *imports, "",
             f"@njit({sig!r}, cache=True, nogil=True)",
             f"def {name}({', '.join(args)}):"]
    row = {id(launch): i for i, launch in enumerate(jobs)}
    for launch in launches:
        k = p.kernels[launch.kernel]
        if k.jobs:
            launcher = "launch_parallel" if k.parallel else "launch_serial"
            i = row[id(launch)]
            lines.append(f"    {launcher}(job_fns[{i}], job_argv[{i}], {launch.jobs})  # {launch.node}: {launch.kernel}")
        else:
            lines.append(f"    {launch.kernel}({', '.join(ref(a) for a in launch.args)})  # {launch.node}")
    if not launches:
        lines.append("    pass")
    return "\n".join(lines) + "\n", args
