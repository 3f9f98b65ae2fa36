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
