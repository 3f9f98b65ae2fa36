"""Trial evaluation engines and outcome classification.

``reference`` (:mod:`faultsift.engine.reference`) evaluates one fault per forward and is the
oracle; ``fast`` (:mod:`faultsift.engine.fast`) gives the same outcomes from batched, cached
forwards. Example::

    engine = make_engine("fast", model, device="cpu")
"""

from __future__ import annotations

ENGINE_NAMES = ("fast", "reference")


def make_engine(name: str, model, fault_model=None, threshold: float | None = None, device: str = "cpu"):
    """An engine by name: ``fast`` or ``reference``."""
    from faultsift.engine.fast import FastEngine
    from faultsift.engine.outcome import DEFAULT_THRESHOLD
    from faultsift.engine.reference import ReferenceEngine
    from faultsift.errors import ConfigError

    engines = {"fast": FastEngine, "reference": ReferenceEngine}
    if name not in engines:
        raise ConfigError(f"Unknown engine `{name}`; engines are {', '.join(ENGINE_NAMES)}.")
    return engines[name](model, fault_model, DEFAULT_THRESHOLD if threshold is None else threshold, device)
