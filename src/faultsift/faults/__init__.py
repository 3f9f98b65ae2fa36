"""Fault models, bit-level operations, sites and the beam-measured fault table."""
