"""ui.cache: the shared LRU, the one store-cached curvature path, and the job bodies."""

from __future__ import annotations

import pytest
import torch

from core import config as core_config
from core import experiment
from core.store import RunStore
from ui import cache, state


def test_shared_computes_once_per_key_and_evicts_the_oldest(monkeypatch):
    monkeypatch.setattr(cache, "MAX_SHARED", 2)
    calls = []

    def compute(key):
        return lambda: calls.append(key) or key.upper()

    assert cache.shared("a", compute("a")) == "A" and cache.shared("a", compute("a")) == "A"
    cache.shared("b", compute("b"))
    cache.shared("a", compute("a"))  # a is now the newest
    cache.shared("c", compute("c"))  # evicts b
    cache.shared("b", compute("b"))
    assert calls == ["a", "b", "c", "b"]


@pytest.fixture
def trained(tmp_path):
    cfg = core_config.normalize(state.build_config(dict(state.DEFAULTS, epochs=1), strategies=False))
    store = RunStore(tmp_path)
    experiment.train_model(cfg, experiment.prepare(cfg), "original", store=store)
    return cfg, store


def test_curvature_is_the_engines_store_cached_path(trained, monkeypatch):
    cfg, store = trained
    assert cache.cached_curvature(cfg, store) is None  # nothing computed: no work either
    scores = cache.curvature(cfg, store)
    model, _ = experiment.train_model(cfg, experiment.prepare(cfg), "original", store=store)
    direct, _, was_cached = experiment.curvature_scores(cfg, experiment.prepare(cfg), model, store)
    assert was_cached  # the dashboard wrote the engine's own store entry
    assert all(torch.equal(scores[n], direct[n]) for n in direct)

    def boom(*a, **k):
        raise AssertionError("curvature recomputed")

    monkeypatch.setattr("core.curvature.hessian_diagonal", boom)
    cache.clear()  # a new server process: loaded from the store, not recomputed
    again = cache.cached_curvature(cfg, store)
    assert again is not None and all(torch.equal(again[n], direct[n]) for n in direct)


def test_job_bodies_pass_the_config_and_store_through(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(
        experiment, "run", lambda cfg, store, progress: seen.update(run=(cfg, store.root)) or 1
    )
    monkeypatch.setattr(
        "core.deep_eval.forget_quality_run",
        lambda cfg, models, store, progress: seen.update(deep=(models, store.root)),
    )
    cfg = {"strategies": [{"name": "saps"}], "seed": 3}
    cache.train_job(cfg, str(tmp_path))(lambda *a: None)
    assert seen["run"] == ({"strategies": [], "seed": 3}, tmp_path)
    cache.deep_eval_job(cfg, str(tmp_path), 4)(lambda *a: None)
    assert seen["deep"] == (4, tmp_path)
