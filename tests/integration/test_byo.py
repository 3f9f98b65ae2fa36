"""Bring your own model and data: the whole study on real timm/torchvision models and generated images.

The fast test runs the study preset on timm ``vit_tiny_patch16_224`` with a weights file and a
tiny ImageFolder; the slow ones (``make test-slow``) run Swin, ResNet and a torchvision model.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import write_image_folder

FAULTSIFT = [sys.executable, "-m", "faultsift"]
TINY = ["-k", "2", "--faults", "3", "--screen-faults", "3", "--n-boot", "100", "--quiet"]


def run(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*FAULTSIFT, *args], capture_output=True, text=True, env=env, timeout=600)


def save_weights(name, path, num_classes=2, seed=0):
    torch.manual_seed(seed)  # timm's init draws from the global generator
    model = timm.create_model(name, pretrained=False, num_classes=num_classes).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, per_class=3, size=(230, 250))
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG truncated")
    return root


def test_study_preset_on_timm_vit_with_weights_and_an_image_folder(images, tmp_path):
    weights = tmp_path / "vit_tiny.safetensors"
    model = save_weights("vit_tiny_patch16_224", weights)
    out = tmp_path / "run"
    result = run("study", "--preset", "study-vit", "--models", "timm:vit_tiny_patch16_224", "--weights", str(weights),
                 "--num-classes", "2", "--data", f"imagefolder:{images}", "--fault-models", "bitflip", "--out", str(out),
                 *TINY)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    config, info = summary["config"], summary["models"]["vit_tiny_patch16_224"]
    # the preset fills what was not given: the study's sites and bit range
    assert config["preset"] == "study-vit" and (config["bit_low"], config["bit_high"]) == (14, 23)
    assert config["sites"] == ["Attention", "Block", "Mlp"] and config["k"] == 2
    assert info["init"] == f"weights from {weights}" and info["skipped_inputs"][0][0] == "dog/broken.png"
    assert len(info["sites"]) == 12 * 3
    # the golden pass equals an independent one: timm's own eval transform and the saved model
    prof = pd.read_parquet(out / "vit_tiny_patch16_224" / "profile.parquet")
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    files = sorted(p for p in images.rglob("img*.png"))
    with torch.inference_mode():
        logits = model(torch.stack([transform(Image.open(p).convert("RGB")) for p in files]))
    assert len(prof) == 6
    np.testing.assert_allclose(np.stack(prof["logits"]), logits.numpy(), atol=1e-4)
    # sets and trials
    camp = info["fault_models"]["bitflip"]
    correct = prof[prof["correct"]].sort_values("margin")
    by_name = {s["set"]: s for s in camp["sets"]}
    assert by_name["low-confidence"]["input_ids"] == sorted(correct["input_id"][:2].tolist()) or \
        by_name["low-confidence"]["input_ids"] == correct["input_id"][:2].tolist()
    assert all(s["trials"] == 2 * 3 for s in camp["sets"])
    faults = pd.read_parquet(out / "vit_tiny_patch16_224" / "bitflip" / "faults.parquet")
    bits = np.concatenate(faults["bits"].to_numpy())
    assert len(faults) == 3 and bits.min() >= 14 and bits.max() <= 23 and set(faults["dtype"]) == {"fp32"}


def main_exit(monkeypatch, capsys, *args):
    """Run the console entry point in this process; its exit code and stderr."""
    from faultsift.cli import main

    monkeypatch.setattr(sys, "argv", ["faultsift", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def test_too_few_correct_inputs_and_a_missing_preset_folder_are_one_line_errors(images, tmp_path, monkeypatch, capsys):
    code, err = main_exit(monkeypatch, capsys, "study", "--models", "timm:test_vit", "--num-classes", "2", "--data",
                          f"imagefolder:{images}", "--sites", "Mlp", "--fault-models", "bitflip", "--out",
                          str(tmp_path / "r"), "--quiet", "-k", "6")
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1
    assert "Expected `k` <= " in err and "random init (no weights given)" in err
    code, err = main_exit(monkeypatch, capsys, "study", "--preset", "study-swin", "--out", str(tmp_path / "p"))
    assert code == 2 and "Expected `--data imagenet-val:DIR --labels FILE`" in err
    code, err = main_exit(monkeypatch, capsys, "study", "--preset", "study-vt", "--data", "zoo:digits", "--out",
                          str(tmp_path / "p"))
    assert code == 2 and "Did you mean `study-vit`" in err


def test_profile_command_on_an_image_folder_with_limit(images, tmp_path, monkeypatch, capsys):
    out = tmp_path / "p.parquet"
    code, err = main_exit(monkeypatch, capsys, "profile", "timm:test_vit", f"imagefolder:{images}", "--num-classes",
                          "2", "--limit", "5", "--out", str(out))  # the 5 first files hold the broken one
    assert code == 0 and "random init (no weights given)" in err and "4 inputs, 1 unreadable skipped" in err
    prof = pd.read_parquet(out)
    assert len(prof) == 4 and prof["label"].tolist() == [0, 0, 0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("spec,sites,fault_models", [
    ("timm:vit_tiny_patch16_224", None, "bitflip,beam-body,beam-full"),
    ("timm:swin_tiny_patch4_window7_224", None, "bitflip,beam-body,beam-full"),
    ("timm:resnet18", "BasicBlock", "bitflip"),
    ("torchvision:mobilenet_v3_small", "Conv2d", "bitflip"),
])
def test_whole_study_on_real_models_with_random_init(images, tmp_path, spec, sites, fault_models):
    out = tmp_path / "run"
    args = ["study", "--models", spec, "--num-classes", "2", "--data", f"imagefolder:{images}",
            "--fault-models", fault_models, "--out", str(out), *TINY]
    result = run(*args, *(["--sites", sites] if sites else []))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    (label, info), = summary["models"].items()
    assert info["init"].startswith("random init") and len(info["skipped_inputs"]) == 1
    assert set(info["fault_models"]) == set(fault_models.split(","))
    for fm, camp in info["fault_models"].items():
        trials = pd.read_parquet(out / label / fm / "trials.parquet")
        for s in camp["sets"]:
            mine = trials[trials["input_id"].isin(s["input_ids"])]
            assert s["trials"] == len(mine) == 2 * 3
            assert s["critical"] == int((mine["outcome"] == "sdc_critical").sum())


@pytest.mark.slow
def test_study_in_fp16_on_timm_swin(images, tmp_path):
    out = tmp_path / "run"
    result = run("study", "--models", "timm:swin_tiny_patch4_window7_224", "--num-classes", "2", "--dtype", "fp16",
                 "--data", f"imagefolder:{images}", "--fault-models", "bitflip,beam-body", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    info = summary["models"]["swin_tiny_patch4_window7_224"]
    assert info["dtype"] == "fp16" and info["fault_models"]["beam-body"]["params"]["precision"] == "fp16"
    faults = pd.read_parquet(out / "swin_tiny_patch4_window7_224" / "bitflip" / "faults.parquet")
    assert set(faults["dtype"]) == {"fp16"} and np.concatenate(faults["bits"].to_numpy()).max() <= 15
