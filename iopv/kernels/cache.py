"""Where the compiled kernels are cached, and when a cached kernel is stale.

numba's on-disk cache (``cache=True``) judges a cached kernel fresh by the source file of the
function it compiled, and by nothing else. But a kernel also bakes in what it reads from other
modules when it is compiled: the codes of ``iopv.core.constants`` (plain ints by then, folded
into the machine code) and the helpers it inlines from another kernel module. Edit one of those
and numba kept serving the old machine code, with the old values.

``install`` registers ``KernelCacheLocator`` ahead of numba's own locators, for the functions of
``iopv.kernels`` only (``iopv/kernels/__init__.py`` calls it before any kernel module is
imported, so before any kernel is decorated). It keeps the cache where numba would have put it
(``NUMBA_CACHE_DIR``, else the module's ``__pycache__``, else the user-wide cache directory) and
changes one thing: the source stamp stored with every cached kernel is a hash of the kernel's
file and of every module of the package that file imports, transitively (read from its import
statements, since a constant is a plain int by the time numba sees it). Change any of those files
and the kernels that depend on it compile again on their next call, and their cache entries are
overwritten; edits anywhere else leave the cache alone. Hashing costs a few ms once per process
(the files are read once each), so a warm start stays warm.

Relies on numba's cache-locator interface (``numba.core.caching``: the locator base class and the
list of locator classes a function's cache tries in turn), which numba has kept since 0.49;
tests/unit/test_kernel_cache.py edits a constant in a copy of the package and checks the kernel's
result follows.
"""

from __future__ import annotations

import ast
import hashlib
import os
from functools import cache

from numba.core import caching

#: The package whose modules count as a kernel's sources.
PACKAGE = __name__.split(".")[0]
#: Functions of these modules get the locator (the kernel modules).
KERNEL_PREFIX = __name__.rsplit(".", 1)[0] + "."

_Impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # noqa: SLF001 -- renamed in numba 0.61


@cache
def _read(path: str, mtime_ns: int, size: int) -> tuple[bytes, tuple[str, ...]]:
    """(sha256 of the file, the package's modules it imports); memoised on the file's stat, so
    each file is read once per process unless it changes."""
    with open(path, "rb") as handle:
        source = handle.read()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == PACKAGE or node.module.startswith(PACKAGE + "."):
                imported.add(node.module)  # ``from iopv.core import constants``: the submodule too
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names
                            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."))
    return hashlib.sha256(source).digest(), tuple(sorted(imported))


def _module_file(root: str, module: str) -> str | None:
    """The source file of ``module`` under ``root`` (the directory holding the package), if any."""
    base = os.path.join(root, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _root(py_file: str, module: str) -> str:
    """The directory holding the package, from a module's file and dotted name."""
    root = os.path.abspath(py_file)
    for _ in module.split("."):
        root = os.path.dirname(root)
    return root


def dependency_files(py_file: str, module: str) -> list[str]:
    """``py_file`` (the source of ``module``) and the file of every package module it imports,
    transitively, in a stable order (a package's ``__init__`` counts when imported by name)."""
    root = _root(py_file, module)
    seen = {os.path.abspath(py_file)}
    todo = list(seen)
    while todo:
        path = todo.pop()
        stat = os.stat(path)
        for name in _read(path, stat.st_mtime_ns, stat.st_size)[1]:
            dependency = _module_file(root, name)
            if dependency is not None and dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return sorted(seen, key=lambda path: os.path.relpath(path, root))


def source_stamp(py_file: str, module: str) -> str:
    """A hash of ``py_file`` and of every package source it depends on (``dependency_files``)."""
    root = _root(py_file, module)
    digest = hashlib.sha256()
    for path in dependency_files(py_file, module):
        stat = os.stat(path)
        digest.update(os.path.relpath(path, root).encode())
        digest.update(_read(path, stat.st_mtime_ns, stat.st_size)[0])
    return digest.hexdigest()


class KernelCacheLocator(caching._CacheLocator):  # noqa: SLF001 -- numba's locator base class
    """numba's own choice of cache directory for a kernel, with a source stamp covering every
    package source the kernel depends on (module docstring)."""

    def __init__(self, inner, py_file: str, module: str):
        self._inner = inner  # the locator numba would have used
        self._stamp = source_stamp(py_file, module)

    def ensure_cache_path(self) -> None:
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        return self._inner.get_cache_path()

    def get_source_stamp(self) -> str:
        return self._stamp

    def get_disambiguator(self) -> str:
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        module = getattr(py_func, "__module__", None) or ""
        if not module.startswith(KERNEL_PREFIX) or not os.path.isfile(py_file):
            return None
        for locator_class in _Impl._locator_classes:  # noqa: SLF001
            if locator_class is not cls:
                inner = locator_class.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner, py_file, module)
        return None


def install() -> None:
    """Put ``KernelCacheLocator`` first in numba's list of cache locators (idempotent)."""
    locators = _Impl._locator_classes  # noqa: SLF001
    if KernelCacheLocator not in locators:
        locators.insert(0, KernelCacheLocator)
