"""Atomic writes: an artifact is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


def write_json(path: str, payload) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def staged_directory(final_path: str):
    """Yield an empty staging folder; on success it replaces `final_path` whole.

    rename(2) cannot replace a non-empty folder, so the old folder is first moved aside and
    deleted after the swap: readers see the old complete tree or the new one, never a mix.
    On error the staging folder is removed and `final_path` is left untouched.
    """
    parent = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(final_path)}-staging-")
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if os.path.exists(final_path):
        old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(final_path)}-old-")
        os.rmdir(old)
        os.replace(final_path, old)
    os.replace(staging, final_path)
    if old:
        shutil.rmtree(old, ignore_errors=True)
