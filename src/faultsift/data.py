"""Load a labelled dataset from a spec string.

Specs:

- ``zoo:digits`` (clean test split), ``zoo:digits-hard`` (the harder evaluation pool),
  ``zoo:digits-train``;
- ``imagefolder:DIR``: torchvision ``ImageFolder`` layout (``DIR/<class>/<image>``; labels are
  the class folders' sorted positions, so ImageNet folders named by WordNet id get the
  standard class indices);
- ``imagenet-val:DIR`` with a ``labels`` file: the flat ImageNet validation folder; the file
  holds ``FILENAME LABEL`` lines, or one label per line in sorted file-name order, or is the
  ``LOC_val_solution.csv`` (WordNet ids, indexed in sorted order);
- ``tensors:FILE``: ``.pt`` (read with ``weights_only``) or ``.npz`` with ``inputs`` and
  ``labels``; integer inputs (token ids) stay int64, floating ones become float32.

Images are resized, cropped and normalised by a :class:`Preprocess` (from a timm model's
data config with :meth:`Preprocess.for_model`, or given explicitly). They are decoded once,
kept as uint8 crops and normalised on access, so a pool costs 150 KB per 224x224 image.
Images that cannot be decoded are skipped and listed in ``Dataset.skipped``. ``limit`` keeps
the first N inputs, ``subset`` a seeded random N; either is applied before decoding.

Example::

    data = load_data("zoo:digits-hard")
    data.inputs.shape   # torch.Size([2160, 1, 8, 8])
    pets = load_data("imagefolder:pets", preprocess=Preprocess.for_model(model), subset=200)
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from faultsift.errors import ConfigError, LoadError
from faultsift.models import _split_spec
from faultsift.registry import unknown_name_message
from faultsift.zoo.data import digits_split, hard_pool

log = logging.getLogger(__name__)

DATA_KINDS = ("zoo", "imagefolder", "imagenet-val", "tensors")
ZOO_DATA = {
    "digits": lambda: digits_split("test"),
    "digits-hard": hard_pool,
    "digits-train": lambda: digits_split("train"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing of images: resize to ``size / crop_pct``, center crop ``size``, normalise.

    Defaults are torchvision's classic ImageNet eval (resize 256, crop 224, bilinear).
    """

    size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> "Preprocess":
        """From a timm model's data config (``pretrained_cfg``); the defaults for other models."""
        if not getattr(model, "pretrained_cfg", None):
            return cls()
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        channels, height, width = cfg["input_size"]
        if height != width:
            raise ConfigError(f"Expected a square input size, got {height}x{width} in the model's data config.")
        return cls(height, float(cfg["crop_pct"]), cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"]), channels)

    def updated(self, text: str | None) -> "Preprocess":
        """A copy with fields from ``size=224,crop_pct=0.9,interpolation=bicubic,mean=0.5/0.5/0.5,std=...``."""
        if not text:
            return self
        names = [f.name for f in fields(self)]
        values: dict = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"Expected `preprocess` items like `size=224`, got `{item}`.")
            if key not in names:
                raise ConfigError(unknown_name_message("preprocess field", key, names))
            try:
                values[key] = (tuple(float(v) for v in value.split("/")) if key in ("mean", "std")
                               else int(value) if key in ("size", "channels")
                               else float(value) if key == "crop_pct" else value)
            except ValueError:
                raise ConfigError(f"Expected a number for preprocess `{key}`, got `{value}`.") from None
        out = replace(self, **values)
        if not (0 < out.crop_pct <= 1 and out.size > 0 and len(out.mean) == len(out.std) == out.channels):
            raise ConfigError(f"Expected size > 0, crop_pct in (0, 1] and {out.channels} mean/std values, got {text}.")
        return out

    def crop(self):
        """The resize-and-crop transform (PIL image -> uint8 tensor [C, size, size]), from timm."""
        from timm.data import create_transform

        return create_transform(input_size=(self.channels, self.size, self.size), interpolation=self.interpolation,
                                crop_pct=self.crop_pct, crop_mode="center", use_prefetcher=True)


class NormalizedImages:
    """Images kept as uint8 crops [N, C, H, W]; indexing returns normalised float32 tensors."""

    def __init__(self, crops: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]):
        self.crops = crops
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def shape(self) -> torch.Size:
        return self.crops.shape

    dtype = torch.float32

    def __getitem__(self, index) -> torch.Tensor:
        crops = self.crops[torch.as_tensor(index) if isinstance(index, (list, np.ndarray)) else index]
        single = crops.dim() == 3
        x = (crops.unsqueeze(0) if single else crops).float().div(255).sub(self.mean).div(self.std)
        return x[0] if single else x


@dataclass(frozen=True)
class Dataset:
    """Inputs [N, ...] and integer labels [N]; input ids are positions 0..N-1.

    ``sources`` names the file of each input (image data); ``skipped`` lists the files that
    could not be read, with the reason.
    """

    name: str
    inputs: torch.Tensor | NormalizedImages
    labels: torch.Tensor
    sources: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

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
    return (inputs.float() if inputs.is_floating_point() else inputs.long()), labels.long()


def _chosen(n: int, limit: int | None, subset: int | None, seed: int) -> np.ndarray:
    """Positions kept by ``limit`` (the first N) or ``subset`` (a seeded random N, in order)."""
    if limit is not None and subset is not None:
        raise ConfigError(f"Expected either `limit` or `subset`, got both ({limit}, {subset}).")
    for name, value in (("limit", limit), ("subset", subset)):
        if value is not None and not 1 <= value <= n:
            raise ConfigError(f"Expected `{name}` in [1, {n}] (inputs in the data), got {value}.")
    if limit is not None:
        return np.arange(limit)
    if subset is not None:
        return np.sort(np.random.default_rng(seed).choice(n, size=subset, replace=False))
    return np.arange(n)


def _imagefolder_items(root: Path) -> list[tuple[str, int]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        _, class_to_idx = find_classes(str(root))
    except (FileNotFoundError, NotADirectoryError):
        raise LoadError(f"Expected class folders in {root} (ImageFolder layout DIR/<class>/<image>), found none.") from None
    return make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)


def _imagenet_val_items(root: Path, labels_file: Path | None) -> list[tuple[str, int]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if labels_file is None:
        raise ConfigError("Expected a labels file for `imagenet-val:DIR` (`--labels FILE`).")
    if not root.is_dir():
        raise LoadError(f"Image folder {root} does not exist.")
    if not Path(labels_file).is_file():
        raise LoadError(f"Labels file {labels_file} does not exist.")
    files = sorted(p.name for p in root.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
    by_name: dict[str, int] = {}
    lines = [ln.strip() for ln in Path(labels_file).read_text().splitlines() if ln.strip()]
    if Path(labels_file).suffix == ".csv":  # LOC_val_solution.csv: ImageId,"wnid x y x y ..."
        rows = {stem: rest.split()[0] for stem, rest in (ln.split(",", 1) for ln in lines[1:])}
        index = {wnid: i for i, wnid in enumerate(sorted(set(rows.values())))}
        by_name = {f: index[rows[Path(f).stem]] for f in files if Path(f).stem in rows}
    elif lines and len(lines[0].split()) == 2:
        try:
            by_name = {Path(a).name: int(b) for a, b in (ln.split() for ln in lines)}
        except ValueError:
            raise LoadError(f"Expected `FILENAME LABEL` lines in {labels_file}.") from None
    else:
        if len(lines) != len(files):
            raise LoadError(f"Labels file {labels_file} has {len(lines)} labels but {root} has {len(files)} images.")
        try:
            by_name = dict(zip(files, (int(ln) for ln in lines)))
        except ValueError:
            raise LoadError(f"Expected one integer label per line in {labels_file}.") from None
    unlabelled = [f for f in files if f not in by_name]
    if unlabelled:
        raise LoadError(f"Labels file {labels_file} has no label for {len(unlabelled)} images ({', '.join(unlabelled[:3])}).")
    return [(str(root / f), by_name[f]) for f in files]


def _decode(path: str, crop, mode: str) -> torch.Tensor | str:
    """The uint8 crop of one image, or the reason it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return crop(image.convert(mode))
    except Exception as exc:  # a corrupt file must never stop the run
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


def _load_images(spec: str, root: Path, items: list[tuple[str, int]], preprocess: Preprocess) -> Dataset:
    crop, mode = preprocess.crop(), "RGB" if preprocess.channels == 3 else "L"
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(lambda item: _decode(item[0], crop, mode), items))
    names = [os.path.relpath(path, root) for path, _ in items]
    skipped = tuple((name, out) for name, out in zip(names, decoded) if isinstance(out, str))
    for name, reason in skipped:
        log.warning("skipped unreadable image %s (%s)", name, reason)
    kept = [i for i, out in enumerate(decoded) if not isinstance(out, str)]
    if not kept:
        raise LoadError(f"No readable image in {root} ({len(items)} files, {len(skipped)} unreadable).")
    crops = torch.stack([decoded[i] for i in kept])
    labels = torch.tensor([items[i][1] for i in kept], dtype=torch.int64)
    return Dataset(spec, NormalizedImages(crops, preprocess.mean, preprocess.std), labels,
                   tuple(names[i] for i in kept), skipped)


def image_preprocess(spec: str, model: torch.nn.Module, overrides: str | None = None) -> Preprocess | None:
    """The preprocessing of an image spec for ``model`` (its data config, then ``overrides``); None for other specs."""
    if not spec.startswith(("imagefolder:", "imagenet-val:")):
        return None
    return Preprocess.for_model(model).updated(overrides)


def load_data(spec: str, *, preprocess: Preprocess | None = None, labels: str | Path | None = None,
              limit: int | None = None, subset: int | None = None, seed: int = 0) -> Dataset:
    """A :class:`Dataset` for ``spec`` (see the module docstring)."""
    kind, rest = _split_spec(spec, DATA_KINDS, "data")
    if kind in ("imagefolder", "imagenet-val"):
        root = Path(rest)
        items = _imagefolder_items(root) if kind == "imagefolder" else _imagenet_val_items(root, labels)
        if not items:
            raise LoadError(f"No image files in {root}.")
        items = [items[i] for i in _chosen(len(items), limit, subset, seed)]
        return _load_images(spec, root, items, preprocess or Preprocess())
    if kind == "zoo":
        if rest not in ZOO_DATA:
            raise ConfigError(unknown_name_message("built-in dataset", rest, sorted(ZOO_DATA)))
        inputs, targets = ZOO_DATA[rest]()
    else:
        inputs, targets = _load_tensors(Path(rest))
    if limit is None and subset is None:
        return Dataset(spec, inputs, targets)
    keep = torch.from_numpy(_chosen(len(targets), limit, subset, seed))
    return Dataset(spec, inputs[keep], targets[keep])
