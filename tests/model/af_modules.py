"""Runs single AlphaFold (JAX/Haiku) modules with random weights, and maps those weights
onto the matching ScaleFold modules. Test support for module-level parity tests."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch


def af_configs():
    """AlphaFold's monomer config in float32, deterministic, unfused projections."""
    from alphafold.model import config

    cfg = copy.deepcopy(config.model_config("model_1"))
    gc = cfg.model.global_config
    gc.bfloat16 = False
    gc.deterministic = True
    evo = cfg.model.embeddings_and_evoformer.evoformer
    for name in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        evo[name].fuse_projection_weights = False
    return cfg, gc


def run_haiku(fn: Callable, *inputs: np.ndarray, seed: int = 0, scale: float = 0.3):
    """Initialise `fn`'s Haiku module, randomise *every* parameter (AlphaFold zero-initialises
    final layers, which would hide errors), apply it. Returns (params, output)."""
    import haiku as hk
    import jax

    t = hk.transform(fn)
    params = t.init(jax.random.PRNGKey(seed), *inputs)
    rng = np.random.default_rng(seed)

    def randomise(path_name: str, x):
        arr = rng.standard_normal(np.shape(x)).astype(np.float32)
        if path_name in ("scale",):
            return 1.0 + 0.2 * arr
        return scale * arr

    params = {
        mod: {name: randomise(name, v) for name, v in p.items()} for mod, p in params.items()
    }
    out = t.apply(params, None, *inputs)
    return params, jax.tree_util.tree_map(np.asarray, out)


def lin(p: dict, prefix: str) -> dict[str, torch.Tensor]:
    sd = {f"{prefix}.weight": torch.from_numpy(np.asarray(p["weights"]).T.copy())}
    if "bias" in p:
        sd[f"{prefix}.bias"] = torch.from_numpy(np.asarray(p["bias"]).copy())
    return sd


def lin_flat(w: np.ndarray, prefix: str, bias: np.ndarray | None = None):
    """A Linear from an AlphaFold weight [c_in, ...] (trailing dims flattened to c_out)."""
    w = np.asarray(w)
    sd = {f"{prefix}.weight": torch.from_numpy(w.reshape(w.shape[0], -1).T.copy())}
    if bias is not None:
        sd[f"{prefix}.bias"] = torch.from_numpy(np.asarray(bias).reshape(-1).copy())
    return sd


def ln(p: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.from_numpy(np.asarray(p["scale"]).copy()),
        f"{prefix}.bias": torch.from_numpy(np.asarray(p["offset"]).copy()),
    }


def attention(p: dict, prefix: str) -> dict[str, torch.Tensor]:
    """AlphaFold `Attention` (query_w [c, H, d] ...) -> the reference's `mha` Linear layers."""
    sd = {}
    sd.update(lin_flat(p["query_w"], f"{prefix}.linear_q"))
    sd.update(lin_flat(p["key_w"], f"{prefix}.linear_k"))
    sd.update(lin_flat(p["value_w"], f"{prefix}.linear_v"))
    out_w = np.asarray(p["output_w"])  # [H, d, c_out]
    sd.update(lin_flat(out_w.reshape(-1, out_w.shape[-1]), f"{prefix}.linear_o", p["output_b"]))
    if "gating_w" in p:
        sd.update(lin_flat(p["gating_w"], f"{prefix}.linear_g", p["gating_b"]))
    return sd


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    ours = ours.detach().double().numpy()
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-30))
