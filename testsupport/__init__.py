"""Test support shared by tests/, bench/ and scripts/: never imported by a production package.

`testsupport.receiver` drives the receiver (signed deliveries, an in-process or live app, a Redis proxy
that can be cut); `testsupport.workers` drives the workers (events stored as the receiver stores them,
worker subprocesses). The simulator's own `smartcar_simulator.testing` runs a local Smartcar.
"""
