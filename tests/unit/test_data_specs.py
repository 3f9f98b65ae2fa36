"""Data specs: ImageFolder, ImageNet validation folder, tensors files, preprocessing, corrupt images."""

import numpy as np
import pytest
import torch
from PIL import Image

from faultsift.data import Preprocess, load_data
from faultsift.errors import ConfigError, LoadError

from conftest import write_image_folder as write_images


def test_imagefolder_matches_timm_eval_transform_and_sorted_class_labels(tmp_path):
    from timm.data import create_transform

    write_images(tmp_path, classes=("zebra", "ant", "moth"))
    pre = Preprocess(size=32, crop_pct=0.9, interpolation="bicubic", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    data = load_data(f"imagefolder:{tmp_path}", preprocess=pre)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # ant, moth, zebra
    assert data.sources[0] == "ant/img0.png" and data.skipped == ()
    reference = create_transform(input_size=(3, 32, 32), interpolation="bicubic", crop_pct=0.9, mean=pre.mean, std=pre.std)
    expected = torch.stack([reference(Image.open(tmp_path / s).convert("RGB")) for s in data.sources])
    assert data.inputs.shape == (9, 3, 32, 32)
    torch.testing.assert_close(data.inputs[:], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(data.inputs[np.array([4, 1])], expected[[4, 1]], atol=1e-6, rtol=0)
    torch.testing.assert_close(data.inputs[3], expected[3], atol=1e-6, rtol=0)


def test_preprocessing_from_a_timm_model_data_config():
    import timm

    vit = Preprocess.for_model(timm.create_model("vit_tiny_patch16_224", pretrained=False))
    assert (vit.size, vit.crop_pct, vit.interpolation, vit.mean) == (224, 0.9, "bicubic", (0.5, 0.5, 0.5))
    assert Preprocess.for_model(torch.nn.Linear(2, 2)) == Preprocess()  # no data config: ImageNet defaults
    custom = vit.updated("size=96, crop_pct=1, mean=0.1/0.2/0.3, interpolation=bilinear")
    assert (custom.size, custom.crop_pct, custom.mean, custom.std) == (96, 1.0, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="Unknown preprocess field `sise`.*Did you mean `size`"):
        vit.updated("sise=3")
    with pytest.raises(ConfigError, match="crop_pct in"):
        vit.updated("crop_pct=1.5")
    with pytest.raises(ConfigError, match="3 mean/std values"):
        vit.updated("mean=0.5/0.5")


def test_corrupt_images_are_skipped_and_reported(tmp_path):
    paths = write_images(tmp_path)
    (tmp_path / "cat" / "garbage.png").write_bytes(b"not an image at all")
    truncated = paths["dog"][2].read_bytes()
    paths["dog"][2].write_bytes(truncated[: len(truncated) // 2])
    (tmp_path / "dog" / "empty.jpg").write_bytes(b"")
    data = load_data(f"imagefolder:{tmp_path}", preprocess=Preprocess(size=16))
    assert len(data) == 5 and len(data.inputs) == 5
    skipped = dict(data.skipped)
    assert set(skipped) == {"cat/garbage.png", "dog/img2.png", "dog/empty.jpg"}
    assert all(reason and "\n" not in reason for reason in skipped.values())
    assert "dog/img2.png" not in data.sources and data.labels.tolist() == [0, 0, 0, 1, 1]


def test_limit_and_subset(tmp_path):
    write_images(tmp_path, per_class=4)
    pre = Preprocess(size=16)
    full = load_data(f"imagefolder:{tmp_path}", preprocess=pre)
    first = load_data(f"imagefolder:{tmp_path}", preprocess=pre, limit=3)
    assert first.sources == full.sources[:3]
    some = load_data(f"imagefolder:{tmp_path}", preprocess=pre, subset=5, seed=7)
    again = load_data(f"imagefolder:{tmp_path}", preprocess=pre, subset=5, seed=7)
    expected = np.sort(np.random.default_rng(7).choice(8, size=5, replace=False))
    assert some.sources == again.sources == tuple(full.sources[i] for i in expected)
    torch.testing.assert_close(some.inputs[:], full.inputs[expected])
    with pytest.raises(ConfigError, match=r"Expected `subset` in \[1, 8\]"):
        load_data(f"imagefolder:{tmp_path}", preprocess=pre, subset=9)
    with pytest.raises(ConfigError, match="either `limit` or `subset`"):
        load_data("zoo:digits", limit=3, subset=3)
    digits = load_data("zoo:digits", limit=10)
    assert torch.equal(digits.inputs, load_data("zoo:digits").inputs[:10])


def test_imagenet_val_label_files(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (3, 1, 2)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / name, format="JPEG")
    pre = Preprocess(size=16)
    val = tmp_path / "val.txt"  # FILENAME LABEL, any order
    val.write_text("ILSVRC2012_val_00000002.JPEG 7\nILSVRC2012_val_00000001.JPEG 5\nILSVRC2012_val_00000003.JPEG 9\n")
    assert load_data(f"imagenet-val:{tmp_path}", labels=val, preprocess=pre).labels.tolist() == [5, 7, 9]
    plain = tmp_path / "labels.txt"  # one label per line, sorted file names
    plain.write_text("1\n2\n3\n")
    data = load_data(f"imagenet-val:{tmp_path}", labels=plain, preprocess=pre)
    assert data.labels.tolist() == [1, 2, 3] and data.sources[0] == "ILSVRC2012_val_00000001.JPEG"
    loc = tmp_path / "LOC_val_solution.csv"
    loc.write_text("ImageId,PredictionString\n"
                   "ILSVRC2012_val_00000001,n02 1 2 3 4 n02 5 6 7 8\n"
                   "ILSVRC2012_val_00000002,n01 1 2 3 4\n"
                   "ILSVRC2012_val_00000003,n03 1 2 3 4\n")
    assert load_data(f"imagenet-val:{tmp_path}", labels=loc, preprocess=pre).labels.tolist() == [1, 0, 2]
    plain.write_text("1\n2\n")
    with pytest.raises(LoadError, match="has 2 labels but .* has 3 images"):
        load_data(f"imagenet-val:{tmp_path}", labels=plain, preprocess=pre)
    with pytest.raises(ConfigError, match="Expected a labels file"):
        load_data(f"imagenet-val:{tmp_path}")


def test_tensors_files_keep_token_ids_integer(tmp_path):
    tokens = torch.randint(0, 50, (6, 12), generator=torch.Generator().manual_seed(0))
    torch.save({"inputs": tokens, "labels": torch.arange(6) % 2}, tmp_path / "t.pt")
    data = load_data(f"tensors:{tmp_path / 't.pt'}")
    assert data.inputs.dtype == torch.int64 and torch.equal(data.inputs, tokens)
    np.savez(tmp_path / "x.npz", inputs=np.ones((4, 3), np.float64), labels=np.arange(4))
    assert load_data(f"tensors:{tmp_path / 'x.npz'}", subset=2).inputs.dtype == torch.float32


def test_missing_folders_are_one_line_errors(tmp_path):
    with pytest.raises(LoadError, match="Expected class folders"):
        load_data(f"imagefolder:{tmp_path / 'nope'}")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(LoadError, match="No image files"):
        load_data(f"imagefolder:{tmp_path}")
    with pytest.raises(ConfigError, match="Did you mean `imagefolder`"):
        load_data(f"imagefolders:{tmp_path}")
