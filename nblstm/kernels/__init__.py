"""Compiled kernels: ``cpu`` (numba.njit). Import a target's module only when it is used."""
import hashlib
import os


def refresh_cache_on_change(dispatchers, deps):
    """Make numba's on-disk cache (cache=True) of `dispatchers` notice edits to the files `deps` they call into.

    numba keys a cached function on the hash of its own source file only: after an edit to ``_math.py``
    the kernels of ``cpu.py`` would load stale machine code (a gate-math bug would survive a fix, or the
    reverse). This keeps a marker with the hash of `deps` in the cache folder; when the hash changes the
    cached entries are flushed and numba compiles afresh.
    """
    digest = hashlib.sha256()
    for path in deps:
        with open(path, "rb") as f:
            digest.update(f.read())
    for d in dispatchers:
        cache = getattr(d, "_cache", None)
        folder = getattr(cache, "cache_path", None)
        if folder is None:              # caching off, or a numba without these internals: nothing is stale
            continue
        stem = f"{d.py_func.__module__}.{d.py_func.__qualname__}.deps-"
        marker = os.path.join(folder, stem + digest.hexdigest()[:16])
        if os.path.exists(marker):
            continue
        try:
            cache.flush()
            os.makedirs(folder, exist_ok=True)
            for old in os.listdir(folder):
                if old.startswith(stem):
                    os.remove(os.path.join(folder, old))
            open(marker, "w").close()
        except OSError:
            pass
