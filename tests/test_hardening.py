"""Fuzzing configs and injecting faults: bad input is refused with a named field, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import config as config_mod
from core import experiment
from core.errors import ConfigError, SapsError
from core.store import RunStore
from tests.conftest import small_config

ROOT = Path(__file__).resolve().parents[1]

numbers = (st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True))
json_scalars = st.one_of(st.none(), st.booleans(), *numbers, st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = (
    list(config_mod.DEFAULTS)
    + (
        "scenario.kind scenario.size scenario.target scenario.patch scenario.position scenario.fraction "
        "scenario.to scenario.class scenario.indices scenario.seed train.epochs train.lr train.batch_size "
        "curvature.method curvature.data strategies.0.name strategies.0.fraction strategies.0.largest "
        "strategies.0.live unlearning.method unlearning.steps unlearning.lr"
    ).split()
)


def _set(cfg: dict, dotted: str, value) -> dict:
    parts = dotted.split(".")
    node = cfg
    for p in parts[:-1]:
        key = int(p) if p.isdigit() else p
        if isinstance(node, list):
            node = node[key]
        else:
            node = node.setdefault(key, {})
    last = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    node[last] = value
    return cfg


def validate(cfg: dict) -> None:
    """Everything `run` checks before it trains or stores anything."""
    normalized = config_mod.normalize(cfg)
    experiment.check(normalized, experiment.prepare(normalized))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_fuzzed_field_is_valid_or_named(field, value):
    strategies = [{"name": "saps", "fraction": 0.02}, {"name": "random", "fraction": 0.02}]
    cfg = small_config(strategies=strategies, scenario={"kind": "backdoor", "size": 60, "target": 0})
    cfg = _set(cfg, field, value)
    try:
        validate(cfg)
    except ConfigError as e:
        assert e.field and str(e).startswith(e.field)
    except SapsError:
        pass  # DataError etc.: a message, still no traceback


@settings(max_examples=100, deadline=None)
@given(cfg=st.dictionaries(st.sampled_from(list(config_mod.DEFAULTS) + ["junk"]), json_values, max_size=5))
def test_fuzzed_whole_config(cfg):
    try:
        validate(cfg)
    except SapsError:
        pass


def test_corrupted_cached_checkpoint_marks_run_failed(tmp_path):
    store = RunStore(tmp_path)
    cfg = small_config(train={"epochs": 2}, retrain=False)
    experiment.run(cfg, store=store)
    ckpts = sorted(store.checkpoints.glob("original-*.safetensors"))
    assert ckpts, "the trained model is cached in the store"
    raw = ckpts[0].read_bytes()
    ckpts[0].write_bytes(raw[: len(raw) // 3])
    with pytest.raises(SapsError, match="corrupt or truncated"):
        experiment.run(cfg, store=store)
    rows = store.list_runs()
    assert rows[0]["status"] == "failed" and "corrupt" in rows[0]["error"]


def test_cli_reports_corrupted_checkpoint(tmp_path):
    store = tmp_path / "store"
    cfg_path = tmp_path / "c.json"
    cfg_path.write_text(json.dumps(small_config(train={"epochs": 2}, retrain=False)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "core", "run", "--config", str(cfg_path), "--store", str(store), "--quiet"]
    assert subprocess.run(args, cwd=ROOT, env=env, capture_output=True).returncode == 0
    for ck in (store / "checkpoints").glob("*.safetensors"):
        data = bytearray(ck.read_bytes())
        data[-3] ^= 0x55
        ck.write_bytes(bytes(data))
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "altered" in p.stderr and "Traceback" not in p.stderr


def test_a_checkpoint_copied_over_another_or_with_other_tensors_is_refused(tmp_path):
    """The digest lives in the file, so a self-consistent file of another artifact (the live mask
    copied over θ*) once loaded silently — bool masks cast into float weights; and a file with
    other tensor names crashed in load_state_dict. Both are StoreErrors naming the file and the
    way out; deleting the file recomputes it."""
    from safetensors.torch import save_file

    from core.errors import StoreError

    store = RunStore(tmp_path)
    cfg = small_config(train={"epochs": 2}, retrain=False, strategies=[{"name": "random", "fraction": 0.05}])
    experiment.run(cfg, store=store)
    original = next(store.checkpoints.glob("original-*.safetensors"))
    live = next(store.checkpoints.glob("live-*.safetensors"))
    good = original.read_bytes()
    original.write_bytes(live.read_bytes())
    with pytest.raises(StoreError, match=r"holds 'live-.*', not 'original-.*'; delete it"):
        experiment.run(cfg, store=store)
    save_file({"foo": torch.zeros(3)}, str(original))  # no name in its metadata: the tensors decide
    with pytest.raises(StoreError, match=r"does not fit: missing .*delete it"):
        experiment.run(cfg, store=store)
    save_file({k: v.double() for k, v in store.load_checkpoint(live.stem).items()}, str(live))
    original.write_bytes(good)
    with pytest.raises(StoreError, match=r"does not fit: .* is torch.float64 .*expected torch.bool"):
        experiment.run(cfg, store=store)
    live.unlink()
    live.with_suffix(".json").unlink()
    assert experiment.run(cfg, store=store)["strategies"][0]["n_selected"] > 0  # recomputed
