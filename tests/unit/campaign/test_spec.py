import pytest

from faultsift.campaign.spec import EXAMPLE_SPEC, CampaignSpec, load_spec
from faultsift.errors import ConfigError, LoadError

TOML = """
model = "zoo:digits-cnn"
[selection]
k = 4
[[faults]]
model = "bitflip"
params = { bit_low = 20 }
[run]
seed = 3
"""
YAML = """
model: zoo:digits-cnn
selection: {k: 4}
faults:
  - model: bitflip
    params: {bit_low: 20}
run: {seed: 3}
"""


def test_toml_and_yaml_give_the_same_spec(tmp_path):
    (tmp_path / "a.toml").write_text(TOML)
    (tmp_path / "a.yaml").write_text(YAML)
    a, b = load_spec(tmp_path / "a.toml"), load_spec(tmp_path / "a.yaml")
    assert a == b and a.faults[0].params == {"bit_low": 20} and a.run.seed == 3
    assert a.results_hash() == b.results_hash()


def test_example_spec_is_valid(tmp_path):
    (tmp_path / "c.toml").write_text(EXAMPLE_SPEC)
    spec = load_spec(tmp_path / "c.toml")
    assert [f.model for f in spec.faults] == ["bitflip", "beam-body"] and spec.run.backend == "local"


def test_hash_ignores_execution_fields_only(tmp_path):
    (tmp_path / "a.toml").write_text(TOML)
    spec = load_spec(tmp_path / "a.toml")
    assert spec.with_run(backend="dask", workers=7, engine="reference").results_hash() == spec.results_hash()
    assert spec.with_run(seed=4).results_hash() != spec.results_hash()
    other = spec.model_copy(update={"threshold": 1e-3})
    assert other.results_hash() != spec.results_hash()


@pytest.mark.parametrize("text,needle", [
    (TOML.replace("k = 4", "k = 0"), "Invalid `selection.k`: Input should be greater than or equal to 1, got 0."),
    (TOML.replace("seed = 3", "sed = 3"), "Invalid `run.sed`: Extra inputs are not permitted"),
    (TOML + '\n[stopping]\ninterval = "normal"\n', "Invalid `stopping.interval`"),
    ("model = [", "not valid TOML"),
])
def test_errors_name_file_field_and_value(tmp_path, text, needle):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec(tmp_path / "bad.toml")
    assert needle in str(err.value) and str(tmp_path / "bad.toml") in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file():
    with pytest.raises(LoadError, match="campaign init"):
        load_spec(__import__("pathlib").Path("/nonexistent/spec.toml"))
