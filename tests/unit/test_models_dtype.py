"""--dtype: the model and its inputs are cast; bit-level faults follow the site's dtype."""

import numpy as np
import pytest
import torch

from faultsift.campaign.plan import plan_faults
from faultsift.engine.reference import injected
from faultsift.errors import ConfigError
from faultsift.faults.models import make_fault_model
from faultsift.faults.sites import discover_sites
from faultsift.models import load_model

NUMPY_BITS = {"fp16": (np.float16, np.uint16), "fp32": (np.float32, np.uint32)}


@pytest.mark.parametrize("dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_model_and_inputs_are_cast(hard_pool, dtype, torch_dtype):
    fp32 = load_model("zoo:digits-vit")
    low = load_model("zoo:digits-vit", dtype=dtype)
    assert {p.dtype for p in low.parameters()} == {torch_dtype}
    x = hard_pool.inputs[:64]  # float32 inputs: the model casts them itself
    with torch.inference_mode():
        ref, out = fp32(x), low(x)
    assert out.dtype == torch_dtype
    # the same predictions up to the precision lost (a few near-tie inputs may flip)
    assert (ref.argmax(1) == out.float().argmax(1)).float().mean() >= 0.95
    assert torch.allclose(ref, out.float(), atol=0.2)
    sites = discover_sites(low, x[:2], ["Mlp"])
    assert {s.dtype for s in sites} == {dtype}


def test_bit_flips_follow_the_site_dtype(hard_pool):
    model = load_model("zoo:digits-vit", dtype="fp16")
    x = hard_pool.inputs[:4]
    sites = discover_sites(model, x[:2], ["Attention", "Mlp"])
    fm = make_fault_model("bitflip")
    faults = plan_faults(sites, fm, 40, seed=5)
    bits = np.concatenate([f.bits for f in faults])
    assert bits.min() >= 0 and bits.max() <= 15 and len(np.unique(bits)) > 8
    with pytest.raises(ConfigError, match=r"Expected `bit` in \[0, 15\] for fp16, got 23\."):
        plan_faults(sites, make_fault_model("bitflip", bit_low=20, bit_high=23), 1, seed=0)
    # the corrupted element is the golden fp16 value with that bit flipped (checked through NumPy's views)
    fault = faults[0]
    module = model.get_submodule(fault.site.module)
    seen = {}

    def capture(key):
        return lambda mod, args, out: seen.__setitem__(key, out.reshape(len(x), -1).clone())

    with torch.inference_mode():
        handle = module.register_forward_hook(capture("golden"))
        model(x)
        handle.remove()
        with injected(model, fault, fm, len(x)):
            handle = module.register_forward_hook(capture("faulty"))  # runs after the fault's hook
            model(x)
            handle.remove()
    golden, faulty = seen["golden"].numpy(), seen["faulty"].numpy()
    index, bit = int(fault.indices[0]), int(fault.bits[0])
    float_type, int_type = NUMPY_BITS["fp16"]
    expected = golden.copy()
    expected[:, index] = (golden[:, index].view(int_type) ^ int_type(1 << bit)).view(float_type)
    assert faulty.dtype == np.float16
    np.testing.assert_array_equal(faulty.view(int_type), expected.view(int_type))


def test_unknown_dtype_suggests_the_closest():
    with pytest.raises(ConfigError, match="Unknown dtype `fp61`.*Did you mean `fp16`"):
        load_model("zoo:digits-vit", dtype="fp61")


def test_beam_rows_follow_the_dtype_and_presets_resolve():
    from faultsift.config import StudyConfig, validated
    from faultsift.presets import preset_values
    from faultsift.study import build_fault_model

    config = validated(StudyConfig, **preset_values("study-swin"))
    assert config.models == ("timm:swin_base_patch4_window7_224",) and (config.bit_low, config.bit_high) == (14, 23)
    fm = build_fault_model("beam-body", config, config.models[0])  # every Swin micro-op has its fp32 rows
    assert fm.params()["table_model"] == "swin_base_patch4_window7_224" and fm.params()["precision"] == "fp32"
    half = config.model_copy(update={"dtype": "fp16"})
    assert build_fault_model("beam-full", half, config.models[0]).params()["precision"] == "fp16"
    with pytest.raises(ConfigError, match="no bf16 rows"):
        build_fault_model("beam-body", config.model_copy(update={"dtype": "bf16"}), config.models[0])
