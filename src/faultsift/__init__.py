"""faultsift: input-aware reliability evaluation of DNNs under transient hardware faults."""

__version__ = "0.1.0"
