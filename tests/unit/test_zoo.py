import hashlib
import shutil

import pytest
import torch

import faultsift.zoo.models as zoo
from faultsift.errors import LoadError
from faultsift.zoo.data import digits_split, hard_pool
from faultsift.zoo.models import ZOO_MODELS, load_zoo_model, model_card
from faultsift.zoo.train import accuracy, train_zoo_model


@pytest.mark.parametrize("name", ["digits-vit", "digits-swin", "digits-cnn"])
def test_shipped_weights_are_the_recorded_ones(name):
    card = model_card(name)
    assert hashlib.sha256(ZOO_MODELS.get(name).weights_path.read_bytes()).hexdigest() == card["sha256"]
    model = load_zoo_model(name)
    x, y = digits_split("test")
    assert accuracy(model, x, y) == pytest.approx(card["test_accuracy"], abs=1e-4)
    assert not model.training


def test_zoo_models_use_the_real_timm_micro_ops(zoo_models):
    from timm.layers import Mlp
    from timm.models.swin_transformer import SwinTransformerBlock, WindowAttention
    from timm.models.vision_transformer import Attention, Block

    vit_classes = {type(m) for m in zoo_models["digits-vit"].modules()}
    swin_classes = {type(m) for m in zoo_models["digits-swin"].modules()}
    assert {Block, Attention, Mlp} <= vit_classes
    assert {SwinTransformerBlock, WindowAttention, Mlp} <= swin_classes


def test_data_is_deterministic_and_stratified():
    x1, y1 = hard_pool()
    x2, y2 = hard_pool()
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.shape == (2160, 1, 8, 8)
    _, y_train = digits_split("train")
    _, y_test = digits_split("test")
    share_train = torch.bincount(y_train) / len(y_train)
    share_test = torch.bincount(y_test) / len(y_test)
    assert torch.allclose(share_train, share_test, atol=0.01)
    assert len(y_train) + len(y_test) == 1797


def test_training_is_deterministic(tmp_path):
    a = train_zoo_model("digits-cnn", tmp_path / "a", epochs=2)
    b = train_zoo_model("digits-cnn", tmp_path / "b", epochs=2)
    assert a["sha256"] == b["sha256"]


def test_missing_and_corrupt_weights_say_how_to_fix(tmp_path, monkeypatch):
    vit_weights = ZOO_MODELS.get("digits-vit").weights_path
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(LoadError, match="missing; rebuild it with `faultsift zoo train`"):
        load_zoo_model("digits-cnn")
    (tmp_path / "digits-cnn.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(LoadError, match="corrupt"):
        load_zoo_model("digits-cnn")
    shutil.copy(vit_weights, tmp_path / "digits-cnn.safetensors")
    with pytest.raises(LoadError, match="does not match `digits-cnn`"):
        load_zoo_model("digits-cnn")
