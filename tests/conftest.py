"""Shared fixtures: a temporary run store for every test, small data sets, marker handling."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

# One thread: with a Streamlit server or a second process beside the tests, two OpenMP
# threads per process oversubscribe 2 cores and slow training ~50x.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """Every test gets its own run store, so nothing leaks into runs/ or between tests."""
    monkeypatch.setenv("SAPS_STORE", str(tmp_path / "store"))
    yield


def pytest_collection_modifyitems(config, items):
    cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA (no GPU on this machine)"))


@lru_cache(maxsize=1)
def _digits():
    from core import data

    return data.load("digits")


@pytest.fixture
def digits():
    return _digits()


SMALL_TRAIN = {"epochs": 30, "lr": 0.003, "batch_size": 64}


def small_config(**overrides):
    """The digits backdoor demo config without strategies (fast)."""
    cfg = {
        "dataset": "digits",
        "model": "cnn",
        "seed": 0,
        "device": "cpu",
        "scenario": {"kind": "backdoor", "size": 60, "target": 0},
        "train": dict(SMALL_TRAIN),
        "strategies": [],
        "retrain": True,
        "metrics": {"mia": False, "relearn": False},
    }
    cfg.update(overrides)
    return cfg
