"""Errors raised by faultsift.

Every error carries a one-line message that names what was wrong and how to fix it::

    raise ConfigError("Expected `bit` in [0, 31] for fp32, got 40.")
"""


class FaultsiftError(Exception):
    """Base class of every error faultsift raises on purpose."""


class ConfigError(FaultsiftError, ValueError):
    """A parameter or spec value is outside what is allowed."""


class UnknownNameError(FaultsiftError, LookupError):
    """A registry lookup found no entry of that name."""


class LoadError(FaultsiftError, OSError):
    """A model, data or results file is missing, corrupt or of the wrong shape."""
