"""Operator tools: local tritonserver launcher, query client, batch scoring, sweeps, benchmarks."""
