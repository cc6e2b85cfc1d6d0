"""Issue 9, repair 2: a cached kernel follows every source it depends on (iopv/kernels/cache.py).

numba's own cache judged a kernel fresh by the kernel's file alone, so a kernel kept the value
of a constant imported from iopv/core/constants.py after that file changed. Here a copy of the
package compiles a kernel, a constant is edited in the copy, and a fresh process must see it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import iopv
from iopv.kernels import cache, realtime, scanner, ticks, valuation

PACKAGE = Path(iopv.__file__).parent

#: One tick with a negative price through apply_book_nb: prints its outcome code and whether the
#: kernel came from the cache.
SCRIPT = """
import numpy as np
from iopv.kernels.ticks import apply_book_nb
f, i = np.zeros(1), np.zeros(1, dtype=np.int64)
code = np.zeros(1, dtype=np.int64)
clock = np.array([2**63 - 1, -2**63, 1, 0], dtype=np.int64)
apply_book_nb(i, f - 1.0, f + np.nan, f + np.nan, i, i, code, 1, f + 1.0, f + np.nan, f + np.nan,
              i, i, f, i, 0.0, 3, clock, np.zeros((4, 1), dtype=np.int64), np.zeros((3, 1)),
              np.zeros(100, dtype=np.int64))
stats = apply_book_nb.stats
print(int(code[0]), sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""


def run_copy(root: Path) -> tuple[int, int, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT")}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True,
                         text=True, timeout=240, check=True).stdout
    code, hits, misses = (int(x) for x in out.split())
    return code, hits, misses


def test_a_cached_kernel_follows_an_edited_constant(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "iopv", ignore=shutil.ignore_patterns("__pycache__"))
    constants = tmp_path / "iopv" / "core" / "constants.py"
    source = constants.read_text()
    assert re.search(r"^    NON_POSITIVE_PRICE: int = 10$", source, re.M)  # a TickOutcome field

    assert run_copy(tmp_path) == (10, 0, 1)  # compiled, then cached
    assert list((tmp_path / "iopv" / "kernels" / "__pycache__").glob("ticks.apply_book_nb-*.nbi"))
    assert run_copy(tmp_path) == (10, 1, 0)  # a fresh process loads it from the cache

    constants.write_text(re.sub(r"^    NON_POSITIVE_PRICE: int = 10$", "    NON_POSITIVE_PRICE: int = 99", source,
                                flags=re.M))
    assert run_copy(tmp_path) == (99, 0, 1)  # stale: compiled again with the new value
    assert run_copy(tmp_path) == (99, 1, 0)  # and cached again


def test_every_kernel_module_depends_on_the_constants_and_what_it_imports():
    for module in (valuation, scanner, realtime, ticks):
        files = {Path(p).relative_to(PACKAGE).as_posix()
                 for p in cache.dependency_files(module.__file__, module.__name__)}
        assert {"core/constants.py", Path(module.__file__).relative_to(PACKAGE).as_posix()} <= files
        assert all(name.startswith(("core/", "kernels/")) for name in files)  # the layers below only
    # The real-time kernels inline the side fallbacks of the valuation kernels: an edit there counts.
    assert "kernels/valuation.py" in {Path(p).relative_to(PACKAGE).as_posix()
                                      for p in cache.dependency_files(realtime.__file__, realtime.__name__)}


def test_only_kernels_get_the_locator_and_it_keeps_numbas_cache_directory():
    locator = ticks.apply_book_nb._cache._impl.locator  # noqa: SLF001
    assert isinstance(locator, cache.KernelCacheLocator)
    assert Path(locator.get_cache_path()).parent == Path(ticks.__file__).parent
    assert cache.KernelCacheLocator.from_function(run_copy, __file__) is None  # not a kernel
