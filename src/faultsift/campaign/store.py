"""Parquet storage: atomic writes (temp file, fsync, rename) and checked reads.

Example::

    write_parquet_atomic(df, Path("out/trials.parquet"))
    df = read_parquet(Path("out/trials.parquet"))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from faultsift.errors import ConfigError, LoadError

log = logging.getLogger(__name__)


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


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CampaignStore:
    """A campaign folder: ``spec.json``, ``manifest.json`` and Parquet shards of trial rows.

    Shards live in ``trials/fault_model=NAME/chunk-NNNNN.parquet`` (a Hive-partitioned dataset
    that pyarrow, DuckDB or Spark read as is). A shard is written atomically, then recorded in
    the manifest with its row count and SHA-256; a shard that does not match its record, or
    cannot be read whole, is moved aside (``.chunk-NNNNN.parquet.corrupt``) and redone.

    Example::

        store = CampaignStore(Path("runs/c1"))
        store.open(spec_dict, results_hash="ab12...", versions={...})
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self.manifest: dict = {"chunks": {}, "stopped": {}}

    def open(self, spec: dict, results_hash: str, versions: dict) -> None:
        """Create the folder for ``spec``, or check that it holds results of the same spec."""
        spec_path = self.root / "spec.json"
        if spec_path.exists():
            try:
                stored = json.loads(spec_path.read_text())["results_hash"]
            except (OSError, ValueError, KeyError, TypeError):
                raise LoadError(f"{spec_path} is unreadable; this folder is not a faultsift campaign.") from None
            if stored != results_hash:
                raise ConfigError(
                    f"{self.root} holds results of a different spec (hash {stored}, this spec {results_hash}); "
                    "results are never mixed: use a new `--out` folder or the original spec."
                )
            self.manifest = self._read_manifest()
            return
        if self.root.exists() and any(self.root.iterdir()):
            raise ConfigError(f"{self.root} is not empty and holds no campaign; choose a new `--out` folder.")
        write_json_atomic({"results_hash": results_hash, "spec": spec, "versions": versions}, spec_path)
        write_json_atomic(self.manifest, self.manifest_path)

    def _read_manifest(self) -> dict:
        try:
            manifest = json.loads(self.manifest_path.read_text())
            assert isinstance(manifest.get("chunks"), dict)
            manifest.setdefault("stopped", {})
            return manifest
        except (OSError, ValueError, AssertionError, AttributeError):
            return {"chunks": {}, "stopped": {}}  # rebuilt from the shards themselves

    def shard_path(self, fault_model: str, chunk: int) -> Path:
        return self.root / "trials" / f"fault_model={fault_model}" / f"chunk-{chunk:05d}.parquet"

    @staticmethod
    def key(fault_model: str, chunk: int) -> str:
        return f"{fault_model}/{chunk:05d}"

    def finished(self, fault_model: str, chunk: int, expected_rows: int) -> dict | None:
        """The manifest record of a valid finished shard, or None (a bad shard is moved aside)."""
        path, key = self.shard_path(fault_model, chunk), self.key(fault_model, chunk)
        if not path.exists():
            return None
        record = self.manifest["chunks"].get(key)
        digest = file_sha256(path)
        if record is not None and record["sha256"] == digest and record["rows"] == expected_rows:
            return record
        if record is None:  # stopped between the rename and the manifest update: check the whole file
            try:
                table = pq.read_table(path)
                if table.num_rows == expected_rows:
                    return self._record(key, table.to_pandas(), digest)
            except (pa.ArrowException, OSError):
                pass
        log.warning("shard %s is corrupt or incomplete; it is moved aside and redone", path)
        path.rename(path.with_name(f".{path.name}.corrupt"))
        self.manifest["chunks"].pop(key, None)
        return None

    def write_shard(self, fault_model: str, chunk: int, rows: pd.DataFrame) -> dict:
        """Write one chunk's trial rows atomically and record them in the manifest."""
        path = self.shard_path(fault_model, chunk)
        write_parquet_atomic(rows, path)
        return self._record(self.key(fault_model, chunk), rows, file_sha256(path))

    def _record(self, key: str, rows: pd.DataFrame, digest: str) -> dict:
        record = {"rows": len(rows), "sha256": digest,
                  "critical": int((rows["outcome"] == "sdc_critical").sum())}
        self.manifest["chunks"][key] = record
        write_json_atomic(self.manifest, self.manifest_path)
        return record

    def set_stopped(self, fault_model: str, info: dict) -> None:
        self.manifest["stopped"][fault_model] = info
        write_json_atomic(self.manifest, self.manifest_path)
