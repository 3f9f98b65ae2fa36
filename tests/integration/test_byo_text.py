"""The text path: a py: factory and a tensors file of token ids through the whole study."""

import hashlib
import json

import numpy as np
import pytest
import pandas as pd
import torch

from faultsift.config import StudyConfig, validated
from faultsift.study import run_study
from faultsift.zoo.text import KEYWORDS, NOT, WEIGHTS, keyword_task, text_classifier, write_keyword_pool


def test_keyword_task_labels_are_the_most_frequent_keyword():
    tokens, labels = keyword_task(300, seed=4)
    again, _ = keyword_task(300, seed=4)
    assert torch.equal(tokens, again) and tokens.dtype == torch.int64
    t = tokens.numpy()
    negated = np.concatenate([np.zeros((len(t), 1), bool), t[:, :-1] == NOT], axis=1)
    counts = np.stack([((t == k + 1) & ~negated).sum(1) for k in range(KEYWORDS)], axis=1)
    top = np.sort(counts, axis=1)
    assert (top[:, -1] > top[:, -2]).all()  # a strict winner
    np.testing.assert_array_equal(counts.argmax(1), labels.numpy())
    assert np.bincount(labels.numpy(), minlength=KEYWORDS).min() > 50


def test_shipped_text_model_is_the_recorded_one():
    card = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == card["sha256"]
    tokens, labels = keyword_task(512, seed=1)
    with torch.inference_mode():
        accuracy = float((text_classifier()(tokens).argmax(1) == labels).float().mean())
    assert accuracy == pytest.approx(card["pool_accuracy"], abs=1e-4) and accuracy > 0.8


def test_whole_study_on_the_text_model(tmp_path):
    pool = write_keyword_pool(tmp_path / "tokens.pt", n=256)
    config = validated(StudyConfig, models=("py:faultsift.zoo.text:text_classifier",), data=f"tensors:{pool}",
                       sites=("Attention", "Block", "Mlp"), fault_models=("bitflip", "beam-body"), k=4, n_faults=5,
                       n_screen_faults=3, n_boot=100)
    summary = run_study(config, tmp_path / "run")
    info = summary["models"]["faultsift.zoo.text"]
    assert info["init"] == "as built by the factory" and len(info["sites"]) == 6
    prof = pd.read_parquet(tmp_path / "run" / "faultsift.zoo.text" / "profile.parquet")
    assert len(prof) == 256 and prof["correct"].mean() > 0.75
    for fm in ("bitflip", "beam-body"):
        sets = {s["set"]: s for s in info["fault_models"][fm]["sets"]}
        lowest = prof[prof["correct"]].sort_values(["margin", "input_id"])["input_id"][:4].tolist()
        assert sorted(sets["low-confidence"]["input_ids"]) == sorted(lowest)
        assert all(s["trials"] == 4 * 5 for s in sets.values())
