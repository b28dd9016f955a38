"""Shared fixtures: the session-wide single-node SLURM cluster (tests/slurm_cluster.py)."""

from tests.slurm_cluster import slurm_cluster_info  # noqa: F401
