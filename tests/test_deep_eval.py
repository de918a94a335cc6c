"""Deep evaluation: forget quality over M training seeds on one fixed D_f."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import config, data, metrics, models, scenarios, training
from core.deep_eval import forget_quality_run, training_seeds
from core.errors import ConfigError
from core.store import RunStore
from tests.conftest import small_config

TINY = small_config(
    seed=3,
    train={"epochs": 2, "lr": 0.003, "batch_size": 64},
    strategies=[{"name": "saps", "fraction": 0.05}, {"name": "all"}],
    unlearning={"method": "masked_finetune", "steps": 3, "lr": 0.01},
)


def test_forget_quality_run_matches_a_recomputation_by_hand(tmp_path):
    store = RunStore(tmp_path / "s")
    stages = []
    result = forget_quality_run(
        TINY, models=3, store=store, progress=lambda s, f, m: stages.append(f), workers=1
    )
    assert result["models"] == 3 and result["seeds"] == training_seeds(3, 3) == [3, 4, 5]
    labels = [row["label"] for row in result["labels"]]
    assert set(result["forget_quality"]) == set(labels) and len(labels) == 2
    # one D_f for every seed: drawn with the config's seed (3), whatever the training seed
    ds = data.load("digits")
    fs = scenarios.build(ds, "backdoor", seed=3, size=60, target=0)
    assert result["scenario"]["n_forget"] == len(fs.forget_idx) == 60
    # by hand: θ* of the second seed trained directly, φ = log p_y − log(1 − p_y) on D_f as trained
    cfg = config.normalize(TINY)
    model = models.build("cnn", ds, seed=4)
    t = cfg["train"]
    hp = {"epochs": t["epochs"], "lr": t["lr"], "batch_size": t["batch_size"], "optimizer": t["optimizer"]}
    training.train(model, fs.x_train, fs.y_train, seed=4, device="cpu", weight_decay=t["weight_decay"], **hp)
    x_f, y_f = fs.forget
    with torch.no_grad():
        p = torch.softmax(model.eval()(x_f).double(), 1).gather(1, y_f[:, None]).squeeze(1)
    phi = (p.log() - torch.log1p(-p)).numpy()
    confs = {k: np.array(v) for k, v in result["confidences"].items()}
    assert confs["original"].shape == confs["retrained"].shape == (3, 60)
    np.testing.assert_allclose(confs["original"][1], phi, rtol=1e-4, atol=1e-4)
    # the scores are forget_quality of those confidences against the retrained models
    assert result["original"] == metrics.forget_quality(confs["original"], confs["retrained"])
    for label in labels:
        assert result["forget_quality"][label] == metrics.forget_quality(confs[label], confs["retrained"])
        assert (
            0 <= result["forget_quality"][label] <= 1 and len(result["per_example"]["epsilon"][label]) == 60
        )
    # the retrained models differ between seeds, so the reference is a distribution, not one model
    assert not np.allclose(confs["retrained"][0], confs["retrained"][1])
    assert stages == sorted(stages) and stages[-1] == 1.0
    # trained models are cached: a second run, in 2 worker processes, loads them and gives the same numbers
    assert len(list(store.checkpoints.glob("original-*.safetensors"))) == 3
    again = forget_quality_run(TINY, models=3, store=store, workers=2)
    assert again["workers"] == 2 and again["confidences"] == result["confidences"]
    assert again["forget_quality"] == result["forget_quality"] and again["original"] == result["original"]


@pytest.mark.parametrize("m", [1, 2, 0, "16", True])
def test_too_few_models_is_refused(m):
    with pytest.raises(ConfigError) as err:
        forget_quality_run(TINY, models=m)
    assert err.value.field == "--models"


def test_spawned_workers_do_not_rerun_the_parents_main_script(tmp_path, monkeypatch):
    """Under Streamlit `__main__` is the page script; a spawned worker re-ran it (a marker file
    shows it). With `bare_main` around the pool's start it does not; without, it does — so the
    test can fail."""
    import multiprocessing
    import os
    import sys
    import types
    from concurrent.futures import ProcessPoolExecutor

    from core import deep_eval

    marker = tmp_path / "ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)

    def start_one(bare: bool) -> None:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            if bare:
                with deep_eval.bare_main():
                    future = pool.submit(os.getpid)
            else:
                future = pool.submit(os.getpid)
            assert future.result(timeout=60) != os.getpid()

    start_one(bare=True)
    assert not marker.exists() and sys.modules["__main__"] is page  # restored afterwards
    start_one(bare=False)
    assert marker.exists()  # the control: without it the worker runs the page script
