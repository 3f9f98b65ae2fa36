import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def hard_pool():
    from faultsift.data import load_data

    return load_data("zoo:digits-hard")


@pytest.fixture(scope="session")
def zoo_models():
    from faultsift.models import load_model

    return {name: load_model(f"zoo:{name}") for name in ("digits-vit", "digits-swin", "digits-cnn")}


def write_image_folder(root, per_class=3, classes=("cat", "dog"), seed=0, size=(30, 41)):
    """Random RGB PNGs of varied sizes in an ImageFolder layout (DIR/<class>/imgI.png); returns the paths per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        paths[c] = []
        for i in range(per_class):
            path = root / c / f"img{i}.png"
            Image.fromarray(rng.integers(0, 256, (size[0] + 7 * i, size[1], 3), dtype=np.uint8)).save(path)
            paths[c].append(path)
    return paths
