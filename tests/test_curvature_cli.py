"""`python -m core curvature`: the scores `run` selects with, written for inspection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core import curvature, experiment
from core.__main__ import main
from core.store import RunStore
from tests.conftest import small_config


def test_curvature_command_writes_the_run_scores(tmp_path, capsys):
    cfg = small_config(train={"epochs": 3}, retrain=False, curvature={"method": "exact", "data": "forget"})
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    store = tmp_path / "store"
    out = tmp_path / "scores.safetensors"
    rc = main(["curvature", "--config", str(tmp_path / "c.json"), "--out", str(out), "--store", str(store)])
    assert rc == 0
    scores = load_file(str(out))
    summary = json.loads((tmp_path / "scores.safetensors.json").read_text())
    assert summary["data"] == "forget" and summary["method"] == "exact"
    # independent: the same θ* from the store, scored directly on D_f as trained
    norm = experiment.config_mod.normalize(cfg)
    prepared = experiment.prepare(norm)
    model, meta = experiment.train_model(norm, prepared, "original", store=RunStore(store))
    assert meta["cached"]
    expected = curvature.hessian_diagonal(model, *prepared.forget_set.forget, "exact")
    for name, t in expected.items():
        torch.testing.assert_close(scores[name], t)

    npz = tmp_path / "scores.npz"
    assert (
        main(["curvature", "--config", str(tmp_path / "c.json"), "--out", str(npz), "--store", str(store)])
        == 0
    )
    with np.load(npz) as f:
        np.testing.assert_allclose(f["conv1.weight"], expected["conv1.weight"].numpy())


@pytest.mark.parametrize("out, field", [("scores.txt", "--out"), ("scores.npz", "curvature.method")])
def test_curvature_command_bad_input(tmp_path, capsys, out, field):
    cfg = small_config(curvature={"method": "kfac"}) if field != "--out" else small_config()
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    rc = main(["curvature", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / out)])
    assert rc == 2 and field in capsys.readouterr().err
