"""Benchmarks: each prints ratios against a baseline measured in the same run."""

import switchyard  # noqa: F401, E402 - first: it turns gRPC's fork handlers off before gRPC loads
