"""Parquet storage: atomic writes (temp file, fsync, rename) and checked reads.

Example::

    write_parquet_atomic(df, Path("out/trials.parquet"))
    df = read_parquet(Path("out/trials.parquet"))
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from faultsift.errors import LoadError


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` so that readers see the old file or the whole new one."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    _atomic_write(Path(path), lambda handle: pq.write_table(table, handle))


def write_json_atomic(obj, path: Path) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode()
    _atomic_write(Path(path), lambda handle: handle.write(data))


def write_text_atomic(text: str, path: Path) -> None:
    """Write a text file atomically."""
    _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file; a missing or corrupt file gets a one-line :class:`LoadError`."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"{path} does not exist.")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise LoadError(f"{path} is not a readable Parquet file ({exc}).") from None
