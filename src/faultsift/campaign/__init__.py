"""Fault planning, trial storage and campaign execution."""
