"""core.curvature against independent computations: brute-force autograd Hessians, per-sample
gradient loops, BackPACK."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from core import curvature, models
from core.curvature.autodiff import functional_sum
from core.curvature.factors import factor_sum
from core.errors import ConfigError


class TanhMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class TinyResidual(nn.Module):
    """conv-BN-ReLU-conv-BN + identity shortcut, ReLU, mean pool, linear: a ResNet block."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():  # non-trivial eval statistics and affine parameters
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)) + x)
        return self.fc(out.mean(dim=(2, 3)))


CASES = {
    "tanh_mlp": (TanhMLP, (10, 6)),
    "relu_cnn": (TinyCNN, (10, 2, 4, 4)),
    "residual_bn": (TinyResidual, (10, 2, 4, 4)),
}


def make(case: str, seed: int = 0):
    torch.manual_seed(seed)
    cls, shape = CASES[case]
    model = cls().double()
    x = torch.randn(*shape, dtype=torch.float64)
    y = torch.randint(0, 3, (shape[0],))
    return model, x, y


def brute_force_diag(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Diagonal of the full autograd Hessian of the mean CE over the flattened parameters."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    buffers = dict(model.named_buffers())
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss(v: torch.Tensor) -> torch.Tensor:
        params = {n: t.reshape(s) for n, t, s in zip(names, v.split(sizes), shapes)}
        return F.cross_entropy(functional_call(model, (params, buffers), (x,)), y)

    was = model.training
    model.eval()
    diag = torch.autograd.functional.hessian(loss, flat).diagonal()
    model.train(was)
    return {n: t.reshape(s) for n, t, s in zip(names, diag.split(sizes), shapes)}


def per_sample_squared_grads(model, x, y) -> dict:
    """Σ_n (∇θ ℓ(x_n, y_n))² / N by a plain loop over samples (independent of the estimator)."""
    model.eval()
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for xn, yn in zip(x, y):
        loss = F.cross_entropy(model(xn[None]), yn[None])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        for (n, _), g in zip(model.named_parameters(), grads):
            total[n] += g.square()
    return {n: t / len(x) for n, t in total.items()}


def rel_err(a: dict, b: dict) -> float:
    return max(
        ((a[n].double() - b[n].double()).norm() / b[n].double().norm().clamp_min(1e-30)).item() for n in b
    )


@pytest.mark.parametrize("case", list(CASES))
def test_exact_equals_brute_force_hessian_diagonal(case):
    model, x, y = make(case)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    diag = curvature.hessian_diagonal(model, x, y, "exact", batch_size=3)
    assert rel_err(diag, brute_force_diag(model, x, y)) <= 1e-5
    assert model.training  # previous mode restored
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # untouched
    for name, p in model.named_parameters():
        assert diag[name].shape == p.shape and diag[name].dtype == torch.float32
        assert diag[name].device.type == "cpu"


@pytest.mark.parametrize("case", ["relu_cnn", "residual_bn"])
def test_ggn_equals_hessian_for_piecewise_linear(case):
    model, x, y = make(case)
    assert rel_err(curvature.hessian_diagonal(model, x, y, "ggn"), brute_force_diag(model, x, y)) <= 1e-5


def test_ggn_differs_from_hessian_for_tanh():
    model, x, y = make("tanh_mlp")
    ggn = curvature.hessian_diagonal(model, x, y, "ggn")
    hess = brute_force_diag(model, x, y)
    assert rel_err(ggn, hess) > 1e-2
    # the last layer sees no curvature after it: there GGN and Hessian agree
    assert torch.allclose(ggn["fc2.weight"].double(), hess["fc2.weight"], rtol=1e-5, atol=1e-9)


def test_ggn_functional_fallback_matches_factor_path():
    model, x, y = make("residual_bn")
    factor = factor_sum(model.eval(), x, y, "ggn", None, 0, None, 64)
    functional = functional_sum(model, x, y, "ggn", 4, 0, None, 64)
    assert rel_err(functional, factor) <= 1e-10


def test_exact_refuses_large_curved_model():
    model, x, y = make("tanh_mlp")
    with pytest.raises(ConfigError, match=r"'act' \(Tanh\).*use 'ggn' or 'hutchinson'"):
        curvature.hessian_diagonal(model, x, y, "exact", max_exact_params=10)


def test_hutchinson_error_falls_with_probes_and_stderr_shrinks():
    model, x, y = make("relu_cnn")
    exact = brute_force_diag(model, x, y)
    errors, stderrs = [], []
    for probes in (4, 64, 1024):
        diag, stderr = curvature.hutchinson_with_stderr(model, x, y, probes=probes, probe_batch=64)
        errors.append(rel_err(diag, exact))
        stderrs.append(max(s.max().item() for s in stderr.values()))
    assert errors[0] > errors[1] > errors[2]
    assert stderrs[0] > stderrs[1] > stderrs[2]
    # the error is of the size the standard error says (within a generous factor)
    diag, stderr = curvature.hutchinson_with_stderr(model, x, y, probes=256, probe_batch=64)
    z = torch.cat([((diag[n] - exact[n]) / stderr[n].clamp_min(1e-12)).flatten() for n in exact])
    assert z.abs().median() < 3


def test_hutchinson_stderr_matches_manual_welford():
    model, x, y = make("relu_cnn")
    a, se_a = curvature.hutchinson_with_stderr(model, x, y, probes=12, probe_batch=5, seed=3)
    b, se_b = curvature.hutchinson_with_stderr(model, x, y, probes=12, probe_batch=5, seed=3)
    c = curvature.hessian_diagonal(model, x, y, "hutchinson", probes=12, probe_batch=5, seed=3)
    assert all(torch.equal(a[n], b[n]) and torch.equal(a[n], c[n]) for n in a)
    assert all(torch.equal(se_a[n], se_b[n]) for n in a)


def test_empirical_fisher_matches_per_sample_loop():
    model, x, y = make("tanh_mlp")
    diag = curvature.hessian_diagonal(model, x, y, "empirical_fisher", batch_size=4)
    assert rel_err(diag, per_sample_squared_grads(model, x, y)) <= 1e-6


def test_fisher_matches_hand_computed_two_layer_case():
    """2-layer net, K samples: Fisher = mean over (n, k) of squared grads at sampled labels."""
    model, x, y = make("tanh_mlp")
    samples = 3
    diag = curvature.hessian_diagonal(model, x, y, "fisher", samples=samples, seed=5)
    # redraw the same labels the estimator drew (same generator, same probabilities)
    with torch.no_grad():
        p = model(x).softmax(1)
    drawn = torch.multinomial(
        p.float(), samples, replacement=True, generator=torch.Generator().manual_seed(5)
    )
    x_rep = x.repeat_interleave(samples, 0)
    expected = per_sample_squared_grads(model, x_rep, drawn.reshape(-1))
    assert rel_err(diag, expected) <= 1e-6
    # and it is an unbiased estimate of the true Fisher = GGN for softmax cross-entropy
    many = curvature.hessian_diagonal(model, x, y, "fisher", samples=4000, seed=1)
    assert rel_err(many, curvature.hessian_diagonal(model, x, y, "ggn")) < 0.1


def test_chunking_and_progress_do_not_change_result():
    model, x, y = make("residual_bn")
    calls = []
    chunked = curvature.hessian_diagonal(
        model, x, y, "ggn", batch_size=3, progress=lambda d, t: calls.append((d, t))
    )
    whole = curvature.hessian_diagonal(model, x, y, "ggn", batch_size=len(x))
    assert rel_err(chunked, whole) <= 1e-6
    assert calls == [(3, 10), (6, 10), (9, 10), (10, 10)]


def test_project_models_run_and_have_dead_units():
    ds = types.SimpleNamespace(shape=(1, 8, 8), classes=list(range(10)))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for name in ("mlp", "cnn"):
        model = models.build(name, ds, seed=0)
        diag = curvature.hessian_diagonal(model, x, y, "exact")
        assert set(diag) == {n for n, _ in model.named_parameters()}
        assert all((d >= 0).all() for d in diag.values())  # GGN diagonals are sums of squares


def test_resnet18_exact_matches_brute_force_on_bn_and_fc():
    ds = types.SimpleNamespace(shape=(3, 8, 8), classes=list(range(10)))
    model = models.build("resnet18", ds, seed=0)
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,))
    diag = curvature.hessian_diagonal(model, x, y, "exact")
    assert set(diag) == {n for n, _ in model.named_parameters()}
    # brute-force Hessian of the loss restricted to one BN or fc tensor at a time
    names = ["layer4.1.bn2.weight", "layer4.1.bn2.bias", "fc.bias"]
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    model.eval()
    for name in names:

        def loss(v: torch.Tensor, name=name) -> torch.Tensor:
            return F.cross_entropy(functional_call(model, ({**params, name: v}, buffers), (x,)), y)

        hess = torch.autograd.functional.hessian(loss, params[name]).diagonal()
        assert torch.allclose(diag[name], hess, rtol=1e-3, atol=1e-7), name


def test_bad_method_and_data_are_refused():
    model, x, y = make("relu_cnn")
    with pytest.raises(ConfigError, match="curvature.method"):
        curvature.hessian_diagonal(model, x, y, "newton")
    with pytest.raises(ConfigError, match="curvature.data"):
        curvature.hessian_diagonal(model, x, y[:3])
    with pytest.raises(ConfigError, match="curvature.batch_size"):
        curvature.hessian_diagonal(model, x, y, batch_size=0)
    with pytest.raises(ConfigError, match="unknown option"):
        curvature.hessian_diagonal(model, x, y, "ggn", probes=3)
    assert set(curvature.ESTIMATORS) == {"exact", "ggn", "ggn_mc", "hutchinson", "fisher", "empirical_fisher"}


def test_exact_agrees_with_backpack_diag_hessian():
    backpack = pytest.importorskip("backpack", reason="BackPACK (dev-only) not installed")
    from backpack.extensions import DiagHessian

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 8),
        nn.ReLU(),
        nn.Linear(8, 5),
    ).double()
    x, y = torch.randn(12, 1, 8, 8, dtype=torch.float64), torch.randint(0, 5, (12,))
    ours = curvature.hessian_diagonal(model, x, y, "exact")
    extended = backpack.extend(model)
    loss_fn = backpack.extend(nn.CrossEntropyLoss())
    with backpack.backpack(DiagHessian()):
        loss_fn(extended(x), y).backward()
    theirs = {n: p.diag_h for n, p in extended.named_parameters()}
    assert rel_err(ours, theirs) <= 1e-5


def test_cli_summary_and_score_files(tmp_path):
    from safetensors.torch import load_file

    from core.curvature_cli import summarize, write_scores

    scores = {"w": torch.tensor([[0.0, 1e-3], [1e-1, 10.0]]), "b": torch.tensor([0.0, 2.0])}
    summary = summarize(scores)
    w = summary["tensors"][0]
    assert (w["min"], w["max"], w["zero_fraction"]) == (0.0, 10.0, 0.25)
    hist = summary["histogram"]
    assert hist["zeros"] == 2 and sum(hist["counts"]) == 4
    assert hist["log10_edges"][0] <= -3 and hist["log10_edges"][-1] >= 1
    write_scores(scores, str(tmp_path / "s.safetensors"))
    assert torch.equal(load_file(str(tmp_path / "s.safetensors"))["w"], scores["w"])


def test_estimator_registry_and_the_one_eval_mode_helper():
    from core import functional

    for name, entry in curvature.ESTIMATORS.items():
        assert entry.name == name and entry.label and entry.description and callable(entry.fn)
    assert curvature.eval_mode is functional.eval_mode


# -- ggn_mc: k sampled output columns per sample, scaled by C/k ----------------------------------


def test_ggn_mc_matches_a_hand_computed_draw():
    """The estimator's draw, redone by hand: per sample, the first k classes of a seeded random
    order; (C/k) Σ_{c drawn} (J_nᵀ s_nc)², s_nc = √p_nc (e_c − p_n), J_nᵀ s by autograd."""
    model, x, y = make("relu_cnn")
    k, seed, n_classes = 2, 7, 3
    diag = curvature.hessian_diagonal(model, x, y, "ggn_mc", mc_samples=k, seed=seed)
    order = torch.rand(len(x), n_classes, generator=torch.Generator().manual_seed(seed)).argsort(1)[:, :k]
    model.eval()
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for xn, drawn in zip(x, order):
        logits = model(xn[None])[0]
        p = logits.detach().softmax(0)
        for c in drawn.tolist():
            s = p[c].sqrt() * (F.one_hot(torch.tensor(c), n_classes).double() - p)
            grads = torch.autograd.grad(logits @ s, list(model.parameters()), retain_graph=True)
            for (n, _), g in zip(model.named_parameters(), grads):
                total[n] += g.square() * n_classes / k
    assert rel_err(diag, {n: t / len(x) for n, t in total.items()}) <= 1e-5


def test_ggn_mc_is_unbiased_for_the_exact_diagonal():
    """The mean of R independent draws (k = 1 column each) is within 5 standard errors of exact,
    coordinate by coordinate (standard error = sample std over the draws / √R)."""
    model, x, y = make("relu_cnn")
    exact = curvature.hessian_diagonal(model, x, y, "exact")
    draws = 400
    stack = {n: [] for n in exact}
    for seed in range(draws):
        for n, v in curvature.hessian_diagonal(model, x, y, "ggn_mc", seed=seed).items():
            stack[n].append(v.double())
    scale = max(float(v.abs().max()) for v in exact.values())
    for n, values in stack.items():
        values = torch.stack(values)
        mean, stderr = values.mean(0), values.std(0) / draws**0.5
        assert ((mean - exact[n].double()).abs() <= 5 * stderr + 1e-6 * scale).all(), n
    one = curvature.hessian_diagonal(model, x, y, "ggn_mc", seed=0)
    assert rel_err(one, exact) > 1e-2  # a single draw is noisy: the test above is not trivial


def test_ggn_mc_with_every_column_is_the_ggn_and_is_seeded():
    model, x, y = make("residual_bn")
    ggn = curvature.hessian_diagonal(model, x, y, "ggn")
    for k in (3, 10):  # k ≥ C: every column, scale 1
        assert rel_err(curvature.hessian_diagonal(model, x, y, "ggn_mc", mc_samples=k, seed=4), ggn) <= 1e-6
    a = curvature.hessian_diagonal(model, x, y, "ggn_mc", seed=4)
    b = curvature.hessian_diagonal(model, x, y, "ggn_mc", seed=4, batch_size=3)
    assert rel_err(a, b) <= 1e-6  # chunking does not change the draw
    with pytest.raises(ConfigError, match="curvature.mc_samples"):
        curvature.hessian_diagonal(model, x, y, "ggn_mc", mc_samples=0)


# -- curvature.samples: a seeded subsample of the curvature data ---------------------------------


def test_subsampled_curvature_is_the_mean_over_a_seeded_draw():
    model, x, y = make("relu_cnn")
    sub = {s: curvature.hessian_diagonal(model, x, y, "exact", subsample=4, seed=s) for s in (0, 1)}
    again = curvature.hessian_diagonal(model, x, y, "exact", subsample=4, seed=0)
    assert all(torch.equal(sub[0][n], again[n]) for n in again)  # same seed: identical scores
    drawn = {s: curvature.subsample_indices(len(x), 4, s) for s in (0, 1)}
    assert len(set(drawn[0].tolist())) == 4 and not torch.equal(drawn[0], drawn[1])
    assert rel_err(sub[0], sub[1]) > 1e-3  # different seed: a different subsample
    for s in (0, 1):  # the mean over the drawn samples, in the units of the full estimate
        by_hand = brute_force_diag(model, x[drawn[s]], y[drawn[s]])
        assert rel_err(sub[s], by_hand) <= 1e-5
    full = curvature.hessian_diagonal(model, x, y, "exact")
    every = curvature.hessian_diagonal(model, x, y, "exact", subsample=len(x), seed=3)
    assert all(torch.equal(full[n], every[n]) for n in full)  # samples ≥ N: all of the data
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="curvature.samples"):
            curvature.hessian_diagonal(model, x, y, "exact", subsample=bad)


def test_the_run_passes_curvature_samples_and_keys_the_cache_by_it(tmp_path):
    from core import artifacts, config
    from core.store import RunStore

    cfg = config.normalize({"train_size": 300, "test_size": 100, "curvature": {"samples": 50}})
    prepared = artifacts.prepare(cfg)
    model = models.build(cfg["model"], prepared.dataset, seed=0).eval()
    store = RunStore(tmp_path / "runs")
    scores, _, cached = artifacts.curvature_scores(cfg, prepared, model, store)
    fs = prepared.forget_set
    idx = curvature.subsample_indices(len(fs.y_train), 50, cfg["seed"])
    by_hand = curvature.hessian_diagonal(model, fs.x_train[idx], fs.y_train[idx], "exact", batch_size=256)
    assert not cached and rel_err(scores, by_hand) <= 1e-6
    assert artifacts.curvature_scores(cfg, prepared, model, store)[2]  # cached under its key
    full = config.normalize({"train_size": 300, "test_size": 100})
    assert artifacts.curvature_key(full) != artifacts.curvature_key(cfg)
    assert not artifacts.curvature_scores(full, prepared, model, store)[2]


@pytest.mark.parametrize("size, k", [(4, 10), (9, 2)])  # L = 16 ≤ 2K−1: Gram form; L = 81: direct
def test_conv_rule_matches_per_sample_gradient_loop(size, k):
    from core.curvature.factors import FACTOR_RULES

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1).double()
    x = torch.randn(4, 3, size * 2, size * 2, dtype=torch.double)
    g = torch.randn(k, 4, *conv(x).shape[1:], dtype=torch.double)  # K×N×O×H×W output gradients
    got = FACTOR_RULES[nn.Conv2d](conv, x, g)
    want = {"weight": torch.zeros_like(conv.weight), "bias": torch.zeros_like(conv.bias)}
    for kk in range(k):
        for n in range(4):
            grads = torch.autograd.grad((conv(x[n : n + 1]) * g[kk, n]).sum(), [conv.weight, conv.bias])
            want["weight"] += grads[0].square()
            want["bias"] += grads[1].square()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-10), name


def test_estimator_options_are_config_keys_that_reach_the_estimator(tmp_path):
    from core import artifacts, config

    base = {"train_size": 300, "test_size": 100}
    plain = config.normalize({**base, "curvature": {"method": "ggn_mc"}})
    assert set(plain["curvature"]) == {"method", "data", "batch_size", "probes"}  # no defaults added
    assert set(config.normalize(base)["curvature"]) == {"method", "data", "batch_size", "probes"}
    cfg = config.normalize({**base, "curvature": {"method": "ggn_mc", "mc_samples": 4}})
    assert cfg["curvature"]["mc_samples"] == 4
    assert artifacts.curvature_key(cfg) != artifacts.curvature_key(plain)
    for bad in (
        {"mc_samples": 4},
        {"method": "ggn_mc", "mc_samples": 0},
        {"method": "hutchinson", "mc_samples": 2},
    ):
        with pytest.raises(ConfigError, match="curvature.mc_samples"):
            config.normalize({**base, "curvature": bad})
    prepared = artifacts.prepare(cfg)
    model = models.build(cfg["model"], prepared.dataset, seed=0).eval()
    scores, _, _ = artifacts.curvature_scores(cfg, prepared, model)
    fs = prepared.forget_set
    by_hand = curvature.hessian_diagonal(
        model, fs.x_train, fs.y_train, "ggn_mc", mc_samples=4, seed=cfg["seed"], batch_size=256
    )
    one = curvature.hessian_diagonal(
        model, fs.x_train, fs.y_train, "ggn_mc", seed=cfg["seed"], batch_size=256
    )
    assert rel_err(scores, by_hand) <= 1e-6 and rel_err(scores, one) > 1e-3


def test_curvature_batch_size_auto_chunks_by_memory_and_gives_the_same_scores(monkeypatch):
    from core import artifacts, config

    base = {"train_size": 300, "test_size": 100}
    auto = config.normalize({**base, "curvature": {"batch_size": "auto"}})
    assert auto["curvature"]["batch_size"] == "auto" and config.normalize(auto) == auto
    for bad in (0, "big", 2.5, True):
        with pytest.raises(ConfigError, match="curvature.batch_size"):
            config.normalize({**base, "curvature": {"batch_size": bad}})
    prepared = artifacts.prepare(auto)
    model = models.build(auto["model"], prepared.dataset, seed=0).eval()
    asked: list = []  # "auto" reaches the estimator as None: chunks sized from its memory budget
    estimator = curvature.hessian_diagonal
    monkeypatch.setattr(
        curvature, "hessian_diagonal", lambda *a, **kw: asked.append(kw["batch_size"]) or estimator(*a, **kw)
    )
    scores, _, _ = artifacts.curvature_scores(auto, prepared, model)
    fs = prepared.forget_set
    by_sevens = estimator(model, fs.x_train, fs.y_train, "exact", batch_size=7)
    assert asked == [None] and rel_err(scores, by_sevens) <= 1e-5
