"""The golden pass: one fault-free forward over a dataset and per-input scores.

Example::

    prof = profile(load_model("zoo:digits-vit"), load_data("zoo:digits-hard"))
    prof[["input_id", "label", "pred", "margin", "correct"]].head()
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultsift.data import Dataset
from faultsift.errors import LoadError
from faultsift.selection.scores import entropy, margin, max_softmax

PROFILE_COLUMNS = (
    "input_id", "label", "pred", "second", "top1_prob", "top2_prob",
    "margin", "max_softmax", "entropy", "correct", "logits",
)


@torch.inference_mode()
def golden_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 512, device: str = "cpu") -> torch.Tensor:
    """Fault-free logits [N, C] in float32 on the CPU."""
    model.eval().to(device)
    chunks = [model(inputs[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(chunks)


def profile_logits(logits: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """Per-input profile table from golden logits and labels."""
    probs = logits.softmax(dim=1)
    top = probs.topk(2, dim=1)
    return pd.DataFrame(
        {
            "input_id": np.arange(len(labels), dtype=np.int64),
            "label": labels.numpy().astype(np.int64),
            "pred": top.indices[:, 0].numpy().astype(np.int64),
            "second": top.indices[:, 1].numpy().astype(np.int64),
            "top1_prob": top.values[:, 0].numpy(),
            "top2_prob": top.values[:, 1].numpy(),
            "margin": margin(logits).numpy(),
            "max_softmax": max_softmax(logits).numpy(),
            "entropy": entropy(logits).numpy(),
            "correct": (top.indices[:, 0] == labels).numpy(),
            "logits": list(logits.numpy()),
        }
    )


def profile(model: nn.Module, data: Dataset, batch_size: int = 512, device: str = "cpu") -> pd.DataFrame:
    """One golden pass over ``data``; one row per input (see ``PROFILE_COLUMNS``)."""
    return profile_logits(golden_logits(model, data.inputs, batch_size, device), data.labels)


def write_profile(prof: pd.DataFrame, path: Path) -> None:
    """Write a profile as Parquet (atomically)."""
    from faultsift.campaign.store import write_parquet_atomic

    write_parquet_atomic(prof, Path(path))


def read_profile(path: Path) -> pd.DataFrame:
    """Read a profile written by :func:`write_profile`, checking its columns."""
    from faultsift.campaign.store import read_parquet

    prof = read_parquet(Path(path))
    missing = [c for c in PROFILE_COLUMNS if c not in prof.columns]
    if missing:
        raise LoadError(f"{path} is not a faultsift profile (missing columns {missing}); make one with `faultsift profile`.")
    return prof
