import pytest

from faultsift.errors import UnknownNameError
from faultsift.registry import Registry


def test_lookup_glob_and_did_you_mean():
    reg = Registry("strategy")
    for name in ("random", "low-confidence", "high-confidence"):
        reg.register(name)(name.upper())
    assert reg.get("random") == "RANDOM"
    assert reg.names("*-confidence") == ["high-confidence", "low-confidence"]
    with pytest.raises(UnknownNameError) as err:
        reg.get("low-confidense")
    message = str(err.value)
    assert "Did you mean `low-confidence`" in message and "Choose from: high-confidence, low-confidence, random" in message
    assert "\n" not in message
    with pytest.raises(ValueError):
        reg.register("random")(1)
