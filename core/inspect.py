"""Where the forgetting happens: per-layer selection share, weight change and representation
similarity (linear CKA), and the penultimate features of a model.

A *layer* is a module that owns parameters directly (Conv2d, Linear, BatchNorm, …), named as in
`model.named_modules()`; its parameters are those named "<layer>.<param>". Everything here is a
pure function of models, masks and inputs: no store, no Streamlit.

Linear CKA (Kornblith et al., ICML 2019) of features X (n×p) and Y (n×q) of the same n inputs,
columns centered:

    CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)
              = ⟨K_X, K_Y⟩_F / (‖K_X‖_F ‖K_Y‖_F),   K_X = X Xᵀ (n×n, centered Gram)

The Gram form is what is computed (n×n, whatever the width p of a layer).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from core.functional import eval_mode

Masks = Mapping[str, torch.Tensor]


# -- layers -----------------------------------------------------------------------------------
def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules that own parameters directly, {name: module}, in registration order."""
    return {n: m for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))}


def layer_of(param_name: str) -> str:
    """The layer (module name) of a parameter name: "layer1.0.conv1.weight" -> "layer1.0.conv1"."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else ""


def layer_share(masks: Masks, model: nn.Module) -> dict[str, float]:
    """Share of each layer's parameters selected by `masks` ({param name: BoolTensor}), in
    [0, 1]: Σ_{p ∈ l} |M_p| / Σ_{p ∈ l} numel(p). Parameters absent from `masks` count as not
    selected."""
    selected: dict[str, int] = {}
    total: dict[str, int] = {}
    for name, p in model.named_parameters():
        layer = layer_of(name)
        total[layer] = total.get(layer, 0) + p.numel()
        m = masks.get(name)
        selected[layer] = selected.get(layer, 0) + (int(m.sum()) if m is not None else 0)
    return {layer: selected[layer] / total[layer] for layer in total}


def relative_change(model: nn.Module, reference: nn.Module) -> dict[str, float]:
    """Per layer l: ‖θ_l − θ*_l‖₂ / ‖θ*_l‖₂ over all the layer's parameters (θ* = `reference`,
    same architecture); 0 for an unchanged layer, inf if θ*_l = 0 and θ_l ≠ 0."""
    ref = dict(reference.named_parameters())
    diff: dict[str, float] = {}
    norm: dict[str, float] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = ref[name].detach().double()
            layer = layer_of(name)
            diff[layer] = diff.get(layer, 0.0) + float(((p.detach().double() - r) ** 2).sum())
            norm[layer] = norm.get(layer, 0.0) + float((r**2).sum())
    out = {}
    for layer, d in diff.items():
        if norm[layer] > 0:
            out[layer] = (d / norm[layer]) ** 0.5
        else:
            out[layer] = 0.0 if d == 0 else float("inf")
    return out


# -- CKA --------------------------------------------------------------------------------------
def centered_gram(x: torch.Tensor) -> torch.Tensor:
    """K = X_c X_cᵀ (n×n, float64) of features `x` (n×…, flattened to n×p), columns centered."""
    x = x.detach().reshape(len(x), -1).double()
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def cka_from_grams(kx: torch.Tensor, ky: torch.Tensor) -> float:
    """Linear CKA from two centered Grams: ⟨K_X, K_Y⟩_F / (‖K_X‖_F ‖K_Y‖_F); nan when one of
    the feature sets is constant (‖K‖ = 0)."""
    denom = float(torch.linalg.norm(kx) * torch.linalg.norm(ky))
    return float((kx * ky).sum()) / denom if denom > 0 else float("nan")


def linear_cka(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Linear CKA of features x (n×p) and y (n×q) of the same n inputs, in [0, 1]; 1 for
    features equal up to an orthogonal transform and an isotropic scaling."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same inputs: {len(x)} vs {len(y)} rows")
    return cka_from_grams(centered_gram(x), centered_gram(y))


def layer_grams(model: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Centered Gram (n×n, float64) of every layer's output on `inputs` (n×C×H×W), one
    forward pass in eval mode through forward hooks; {layer: K} in the order the layers ran
    (a layer called twice keeps its last call). Outputs are flattened per input."""
    grams: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            grams.pop(name, None)
            grams[name] = centered_gram(output)

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers(model).items()]
    try:
        with eval_mode(model), torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return grams


def cka_to_reference(
    grams: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """Per layer, linear CKA between a model's and the reference's activations of the SAME layer
    name on the same inputs (layers missing from the reference are left out)."""
    return {n: cka_from_grams(k, reference[n]) for n, k in grams.items() if n in reference}


# -- penultimate features and their projection -----------------------------------------------
def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last registered nn.Linear (its classifier in every core.models network)."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer")
    return found[-1]


def forward_features(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, penultimate features n×d) of one forward pass, in the model's current mode and
    with the graph kept: the features are exactly the input of the last nn.Linear, captured by a
    forward pre-hook. ValueError when the model has no nn.Linear."""
    captured: list[torch.Tensor] = []
    handle = last_linear(model).register_forward_pre_hook(lambda m, args: captured.append(args[0].flatten(1)))
    try:
        logits = model(inputs)
    finally:
        handle.remove()
    return logits, captured[-1]


def penultimate(
    model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(features n×d, logits n×K) of `inputs` in eval mode (forward_features, in batches)."""
    head = last_linear(model)
    feats, logits = [], []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            out, f = forward_features(model, inputs[i : i + batch_size])
            logits.append(out.detach())
            feats.append(f.detach())
    if not feats:
        return np.zeros((0, head.in_features), np.float32), np.zeros((0, head.out_features), np.float32)
    return torch.cat(feats).cpu().numpy(), torch.cat(logits).cpu().numpy()


def pca_2d(fit: np.ndarray, *others: np.ndarray, seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """A 2-D PCA (scikit-learn) fit on `fit` (n×d), applied to `fit` and to each of `others`
    (m×d): ([coords of fit, coords of each other], explained variance ratio of the 2 axes)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(fit)
    return [pca.transform(a) for a in (fit, *others)], [float(v) for v in pca.explained_variance_ratio_]


def procrustes_2d(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal 2×2 matrix R (rotation or reflection) minimising ‖source R − target‖_F
    over the same points (orthogonal Procrustes: R = U Vᵀ with U S Vᵀ = sourceᵀ target).
    Distances and variances in `source` are unchanged by R."""
    u, _, vt = np.linalg.svd(source.T @ target)
    return u @ vt
