"""Load a labelled dataset from a spec string.

Specs: ``zoo:digits`` (clean test split), ``zoo:digits-hard`` (the harder evaluation pool),
``zoo:digits-train``, ``tensors:FILE`` (``.pt`` or ``.npz`` with ``inputs`` and ``labels``).

Example::

    data = load_data("zoo:digits-hard")
    data.inputs.shape   # torch.Size([2160, 1, 8, 8])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faultsift.errors import ConfigError, LoadError
from faultsift.models import _split_spec
from faultsift.registry import unknown_name_message
from faultsift.zoo.data import digits_split, hard_pool

DATA_KINDS = ("zoo", "tensors")
ZOO_DATA = {
    "digits": lambda: digits_split("test"),
    "digits-hard": hard_pool,
    "digits-train": lambda: digits_split("train"),
}


@dataclass(frozen=True)
class Dataset:
    """Inputs [N, ...] and integer labels [N]; input ids are positions 0..N-1."""

    name: str
    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _load_tensors(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise LoadError(f"Data file {path} does not exist.")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                content = {k: torch.from_numpy(npz[k]) for k in npz.files}
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LoadError(f"Could not read data file {path} ({type(exc).__name__}: {exc}).") from None
    if not isinstance(content, dict) or not {"inputs", "labels"} <= set(content):
        raise LoadError(f"Data file {path} must hold `inputs` and `labels` arrays.")
    inputs, labels = content["inputs"], content["labels"]
    if len(inputs) != len(labels):
        raise LoadError(f"Data file {path} has {len(inputs)} inputs but {len(labels)} labels.")
    return inputs.float(), labels.long()


def load_data(spec: str) -> Dataset:
    """A :class:`Dataset` for ``spec`` (see module docstring)."""
    kind, rest = _split_spec(spec, DATA_KINDS, "data")
    if kind == "zoo":
        if rest not in ZOO_DATA:
            raise ConfigError(unknown_name_message("built-in dataset", rest, sorted(ZOO_DATA)))
        inputs, labels = ZOO_DATA[rest]()
    else:
        inputs, labels = _load_tensors(Path(rest))
    return Dataset(spec, inputs, labels)
