"""The chaos suite: the promise (no event lost, no command sent twice, no forged request in, a clear 4xx
for bad input) checked against real processes that are killed, cut off and fed garbage. A package so
that its conftest and helpers have names of their own."""
