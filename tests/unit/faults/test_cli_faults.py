"""`faultsift sites`, `faultsift list faults` and fault-model errors, run as a user would."""

import os
import subprocess
import sys

from faultsift.faults.models import FAULT_MODELS


def run(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "faultsift", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_sites_lists_activations_and_parameters_with_batch_layout():
    result = run("sites", "zoo:digits-swin", "--select", "WindowAttention[0],layers.0.blocks.0.attn.qkv",
                 "--kinds", "output,input,weight,relative_position_bias_table")
    assert result.returncode == 0, result.stderr
    cells = [[c.strip() for c in line.split("\u2502")[1:-1]] for line in result.stdout.splitlines() if "\u2502" in line]
    rows = {c[0]: c[1:] for c in cells if c}
    assert rows["layers.0.blocks.0.attn:output"] == ["WindowAttention", "(4, 16, 24)", "1536", "fp32", "dim 0, x4 major"]
    assert rows["layers.0.blocks.0.attn:input"] == ["WindowAttention", "(4, 16, 24)", "1536", "fp32", "dim 0, x4 major"]
    assert rows["layers.0.blocks.0.attn.qkv:weight"] == ["Linear", "(72, 24)", "1728", "fp32", "shared"]
    lines = rows
    assert "layers.0.blocks.0.attn:relative_position_bias_table" in lines


def test_list_faults_shows_every_model_and_its_parameters():
    result = run("list", "faults")
    assert result.returncode == 0, result.stderr
    for name in FAULT_MODELS.names():
        assert name in result.stdout
    for param in ("bit_low", "mode", "alpha", "xmin", "restrict", "pattern", "table_model"):
        assert param in result.stdout


def test_site_that_matches_nothing_is_one_line_exit_2():
    result = run("sites", "zoo:digits-cnn", "--select", "Attention")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "No module matches `Attention`; module classes in this model: Conv2d, Linear, MaxPool2d" in result.stderr
