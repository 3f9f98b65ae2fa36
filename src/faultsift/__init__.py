"""faultsift: input-aware reliability evaluation of DNNs under transient hardware faults."""

__version__ = "0.1.0"


def load_results(out_dir):
    """All trial rows of a campaign folder as one pandas DataFrame (see ``faultsift campaign``)."""
    from faultsift.campaign.runner import load_results as _load

    return _load(out_dir)
