"""Executors: the local and the Ray executor give the same results for the same cells."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.executors import map_cells


def _square_plus_seed(spec: dict) -> dict:
    import torch

    g = torch.Generator().manual_seed(spec["seed"])
    return {"value": spec["x"] ** 2, "draw": float(torch.rand(1, generator=g))}


SPECS = [{"x": i, "seed": 10 + i} for i in range(5)]


def test_local_executor_in_order():
    assert [i for i, _ in map_cells(_square_plus_seed, SPECS)] == list(range(5))


def test_unknown_executor():
    with pytest.raises(ConfigError, match="executor"):
        list(map_cells(_square_plus_seed, SPECS, executor="dask"))
    with pytest.raises(ConfigError, match="--address"):
        list(map_cells(_square_plus_seed, SPECS, address="10.0.0.1:6379"))


@pytest.mark.slow
def test_ray_matches_local():
    pytest.importorskip("ray", reason="ray not installed (requirements-scale.txt)")
    local = dict(map_cells(_square_plus_seed, SPECS))
    remote = dict(map_cells(_square_plus_seed, SPECS, executor="ray", num_cpus=2))
    assert remote == local
