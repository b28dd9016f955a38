"""Shared fixtures: the session-wide single-node SLURM cluster (tests/slurm_cluster.py), and torch's
process-wide settings put back after every test."""

import pytest
import torch

from tests.slurm_cluster import slurm_cluster_info  # noqa: F401


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """set_determinism (every job that trains or runs a network) changes process-wide torch state;
    put it back so no test depends on which ran before it."""
    det, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(det)
    torch.set_num_threads(threads)
