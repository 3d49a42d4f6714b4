"""Unit tests of smartcar_core (a package so that its conftest and helpers have names of their own)."""
