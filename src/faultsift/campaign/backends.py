"""Where chunks are evaluated: in this process, in worker processes, or on a Dask cluster.

Every backend returns the same rows for the same chunk: a chunk's faults and inputs are fixed
by the spec, and each worker builds its own copy of the model from the spec.

A worker that dies (segfault, OOM kill) takes its chunk with it: the chunk is retried alone
in a fresh worker, and if it kills its worker again its trials are recorded as DUE
(``due_kind = worker_crash``); the campaign goes on.

Crash drill: ``FAULTSIFT_CRASH_DRILL="bitflip:3:1"`` makes the worker evaluating chunk 3 of
``bitflip`` kill itself (SIGKILL) the first 1 time(s), to check a deployment's crash handling.

Example::

    backend = make_backend(spec, input_ids)
    rows = backend.evaluate(chunks)
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd

from faultsift.campaign.runner import CampaignContext, Chunk, crash_rows
from faultsift.campaign.spec import CampaignSpec
from faultsift.errors import ConfigError

log = logging.getLogger(__name__)
CRASH_RETRIES = 1

_CONTEXTS: dict[str, CampaignContext] = {}


def _context(spec_json: str, input_ids: np.ndarray) -> CampaignContext:
    """This process's campaign context (built once per spec)."""
    key = spec_json + str(len(input_ids))
    if key not in _CONTEXTS:
        _CONTEXTS[key] = CampaignContext(CampaignSpec.model_validate_json(spec_json), input_ids)
    return _CONTEXTS[key]


def _crash_drill(chunk: Chunk, attempt: int) -> None:
    for item in filter(None, os.environ.get("FAULTSIFT_CRASH_DRILL", "").split(",")):
        name, index, times = item.rsplit(":", 2)
        if name == chunk.fault_model and int(index) == chunk.index and attempt < int(times):
            os.kill(os.getpid(), signal.SIGKILL)


def evaluate_chunk(spec_json: str, input_ids: np.ndarray, chunk: Chunk, attempt: int = 0) -> pd.DataFrame:
    """Worker entry point: the trial rows of one chunk."""
    _crash_drill(chunk, attempt)
    return _context(spec_json, input_ids).evaluate(chunk)


class LocalBackend:
    """In this process, one chunk at a time."""

    parallelism = 1

    def __init__(self, spec: CampaignSpec, input_ids: np.ndarray):
        self.spec_json, self.input_ids = spec.model_dump_json(), input_ids

    def evaluate(self, chunks: list[Chunk]) -> list[pd.DataFrame]:
        return [evaluate_chunk(self.spec_json, self.input_ids, c) for c in chunks]

    def close(self) -> None:
        pass


class ProcessBackend(LocalBackend):
    """``workers`` processes on this machine, each with its own model copy."""

    def __init__(self, spec: CampaignSpec, input_ids: np.ndarray):
        super().__init__(spec, input_ids)
        self.parallelism = spec.run.workers
        self.attempts: dict[tuple[str, int], int] = {}
        self.pool = self._new_pool(self.parallelism)

    @staticmethod
    def _new_pool(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def evaluate(self, chunks: list[Chunk]) -> list[pd.DataFrame]:
        futures = [self.pool.submit(evaluate_chunk, self.spec_json, self.input_ids, c, self._attempt(c)) for c in chunks]
        results: list[pd.DataFrame | None] = []
        broken = False
        for future in futures:
            try:
                results.append(future.result())
            except BrokenProcessPool:
                results.append(None)
                broken = True
        if broken:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = self._new_pool(self.parallelism)
            results = [r if r is not None else self._isolated(c) for c, r in zip(chunks, results)]
        return results

    def _attempt(self, chunk: Chunk) -> int:
        return self.attempts.get((chunk.fault_model, chunk.index), 0)

    def _isolated(self, chunk: Chunk) -> pd.DataFrame:
        """Retry a chunk alone; after ``CRASH_RETRIES`` more deaths its trials are DUE."""
        key = (chunk.fault_model, chunk.index)
        for _ in range(CRASH_RETRIES + 1):
            self.attempts[key] = self.attempts.get(key, 0) + 1
            pool = self._new_pool(1)
            try:
                return pool.submit(evaluate_chunk, self.spec_json, self.input_ids, chunk, self.attempts[key]).result()
            except BrokenProcessPool:
                log.warning("chunk %s/%d killed its worker (try %d)", *key, self.attempts[key])
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return crash_rows(chunk, self.input_ids, "worker_crash")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskBackend(LocalBackend):
    """dask.distributed: an existing scheduler (``run.scheduler``) or a LocalCluster."""

    def __init__(self, spec: CampaignSpec, input_ids: np.ndarray):
        super().__init__(spec, input_ids)
        from dask.distributed import Client, LocalCluster

        self.cluster = None
        if spec.run.scheduler:
            self.client = Client(spec.run.scheduler, timeout="30s")
        else:
            self.cluster = LocalCluster(n_workers=spec.run.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.parallelism = max(1, len(self.client.scheduler_info()["workers"])) if spec.run.scheduler else spec.run.workers
        self.resources = {"GPU": 1} if spec.run.device.startswith("cuda") else None

    def evaluate(self, chunks: list[Chunk]) -> list[pd.DataFrame]:
        futures = [self.client.submit(evaluate_chunk, self.spec_json, self.input_ids, c, 0, pure=False,
                                      resources=self.resources, retries=CRASH_RETRIES) for c in chunks]
        results = []
        for chunk, future in zip(chunks, futures):
            try:
                results.append(future.result())
            except Exception as exc:  # a worker killed on every retry (KilledWorker) and the like
                log.warning("chunk %s/%d failed on the cluster: %s", chunk.fault_model, chunk.index, exc)
                results.append(crash_rows(chunk, self.input_ids, f"worker_crash:{type(exc).__name__}"))
        return results

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


BACKENDS = {"local": LocalBackend, "processes": ProcessBackend, "dask": DaskBackend}


def make_backend(spec: CampaignSpec, input_ids: np.ndarray):
    """The backend named in ``spec.run.backend``."""
    if spec.run.backend not in BACKENDS:
        raise ConfigError(f"Expected `run.backend` in {', '.join(BACKENDS)}, got {spec.run.backend}.")
    return BACKENDS[spec.run.backend](spec, input_ids)
