"""Fixtures of the batch tests: a real single-node SLURM for the session."""

import os

import pytest

from batch_helpers import require
from slurm_cluster import SlurmCluster, missing_requirements


@pytest.fixture(scope="session")
def slurm_cluster():
    """munged + slurmctld + slurmd with state in a scratch folder; always stopped afterwards."""
    require(missing_requirements())
    cluster = SlurmCluster()
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = cluster.conf
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        cluster.cleanup()
