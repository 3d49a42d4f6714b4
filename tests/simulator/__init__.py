"""Tests of the simulator (a package so that its conftest and helpers have names of their own)."""
