"""Beam experiments: log format, device-under-test harness, watchdog, emulator, flux, cross sections.

- :mod:`~faultsift.beam.logformat`: writer and tolerant parser of libLogHelper-style logs,
- :mod:`~faultsift.beam.flux`: facility flux logs (ChipIR, LANSCE, CSV) and fluence,
- :mod:`~faultsift.beam.analysis`: cross sections, Garwood intervals, FIT, exact tests,
- :mod:`~faultsift.beam.harness`: golden file and the device-under-test loop,
- :mod:`~faultsift.beam.watchdog`: supervisor with heartbeat timeout and escalation,
- :mod:`~faultsift.beam.emulator`: a Poisson fault/crash/hang source to test the chain.
"""
