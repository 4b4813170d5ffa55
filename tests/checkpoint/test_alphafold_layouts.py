"""The mapping against AlphaFold itself: its real parameter tree, and its modules' outputs.

Shapes: `jax.eval_shape` of ``alphafold.model.modules.AlphaFold`` (no computation, so the
full 48-block MLPerf model is cheap) must give exactly `alphafold_param_shapes`.

Numbers: for each block whose layout is easy to get wrong, AlphaFold's haiku module runs
with random weights and a small PyTorch computation written from the reference's
equations runs with the *mapped* weights; both must agree. This pins down the conventions
(q/k/v/gate/output layouts, the incoming triangle update's swapped operands, the outer
product flattening order, invariant point attention's scalar and point layouts) without
depending on the model implementation.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("alphafold.model.modules")

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from alphafold.model import folding, modules, quat_affine  # noqa: E402

from scalefold.checkpoint.alphafold_params import _Builder, alphafold_param_shapes  # noqa: E402
from scalefold.model.config import AlphaFoldConfig  # noqa: E402

from ..oracles.alphafold_jax import af_model_config, features_to_af_batch, zero_prev  # noqa: E402
from ..oracles.features import random_alphafold_features  # noqa: E402

pytestmark = pytest.mark.oracle


def _with_tm(cfg):
    return dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, tm_enabled=True))


def _alphafold_shapes(cfg) -> dict[str, tuple[int, ...]]:
    model_config = af_model_config(cfg).model
    batch = random_alphafold_features(cfg, n_res=6, n_clust=3, n_extra=4, n_templ=2,
                                      num_iterations=1, torsion_fn=None)
    af_batch = features_to_af_batch(
        batch, 0, prev=zero_prev(6, cfg.evoformer.c_m, cfg.evoformer.c_z)
    )

    def forward(b):
        return modules.AlphaFold(model_config)(b, is_training=False)

    params = jax.eval_shape(hk.transform(forward).init, jax.random.PRNGKey(0), af_batch)
    return {f"{path}//{name}": tuple(v.shape) for path, d in params.items() for name, v in d.items()}


@pytest.mark.parametrize(
    "cfg",
    [AlphaFoldConfig.mlperf(), AlphaFoldConfig.tiny(), _with_tm(AlphaFoldConfig.small())],
    ids=["mlperf", "tiny", "small_tm"],
)
def test_mapping_is_alphafolds_parameter_tree(cfg):
    assert _alphafold_shapes(cfg) == alphafold_param_shapes(cfg)


# --------------------------------------------------------------------------- numbers


def _gc():
    return af_model_config(AlphaFoldConfig.tiny()).model.global_config


def _evoformer_configs():
    return copy.deepcopy(af_model_config(AlphaFoldConfig.tiny()).model.embeddings_and_evoformer)


def _run_haiku(make_module, *args, seed=0):
    """Init a module, randomise every parameter, apply. Returns (output, params)."""
    transformed = hk.transform(lambda *a: make_module()(*a))
    params = transformed.init(jax.random.PRNGKey(0), *args)
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(
        lambda p: jnp.asarray(rng.normal(size=p.shape) / math.sqrt(max(p.shape[0], 1)),
                              jnp.float32),
        params,
    )
    out = transformed.apply(params, jax.random.PRNGKey(1), *args)
    return np.asarray(out), params


def _mapped(build, params) -> dict[str, torch.Tensor]:
    """Reference-named tensors for one module from its AlphaFold parameters."""
    builder = _Builder()
    build(builder)
    seen = {e.af_key for e in builder.entries}
    assert seen == {f"{p}//{n}" for p, d in params.items() for n in d}
    return {
        e.ref: torch.tensor(e.to_reference(np.array(params[e.af_path][e.af_name])),
                            dtype=torch.float64)
        for e in builder.entries
    }


def _ln(x, w, b):
    return F.layer_norm(x, x.shape[-1:], w, b, eps=1e-5)


def _lin(x, w, prefix, bias=True):
    return F.linear(x, w[f"{prefix}.weight"], w.get(f"{prefix}.bias") if bias else None)


def _close(ours: torch.Tensor, theirs: np.ndarray, tol=1e-4):
    theirs = torch.tensor(theirs, dtype=torch.float64)
    scale = theirs.abs().max().clamp_min(1e-6)
    error = ((ours - theirs).abs().max() / scale).item()
    assert error < tol, f"relative error {error:.2e}"
    return error


def _attention(w, prefix, q_in, kv_in, heads, c, bias, gating=True):
    # reference Attention: [*, Q, c_q] x [*, K, c_k] -> [*, Q, c_q]
    def split(x):
        return x.reshape(*x.shape[:-1], heads, c).transpose(-2, -3)  # [*, H, Q, c]

    q = split(_lin(q_in, w, f"{prefix}.linear_q", False)) / math.sqrt(c)
    k = split(_lin(kv_in, w, f"{prefix}.linear_k", False))
    v = split(_lin(kv_in, w, f"{prefix}.linear_v", False))
    a = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)
    o = (a @ v).transpose(-2, -3)  # [*, Q, H, c]
    if gating:
        o = o * torch.sigmoid(_lin(q_in, w, f"{prefix}.linear_g")).reshape(o.shape)
    return _lin(o.reshape(*o.shape[:-2], heads * c), w, f"{prefix}.linear_o")


@pytest.mark.parametrize("outgoing", [True, False], ids=["outgoing", "incoming"])
def test_triangle_multiplication(outgoing):
    n, c_z, c = 5, 6, 4
    name = "triangle_multiplication_" + ("outgoing" if outgoing else "incoming")
    config = _evoformer_configs().evoformer[name]
    config.num_intermediate_channel = c
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, n, c_z)).astype(np.float32)
    mask = (rng.random((n, n)) > 0.2).astype(np.float32)
    theirs, params = _run_haiku(
        lambda: modules.TriangleMultiplication(config, _gc(), name="tri"), z, mask
    )
    w = _mapped(lambda b: b.triangle_multiplication("m", "tri", c_z, c, outgoing), params)

    def reference(w):
        x = _ln(torch.from_numpy(z).double(), w["m.layer_norm_in.weight"], w["m.layer_norm_in.bias"])
        m = torch.from_numpy(mask).double()[..., None]
        a = torch.sigmoid(_lin(x, w, "m.linear_a_g")) * m * _lin(x, w, "m.linear_a_p")
        b = torch.sigmoid(_lin(x, w, "m.linear_b_g")) * m * _lin(x, w, "m.linear_b_p")
        p = torch.einsum("ikc,jkc->ijc" if outgoing else "kic,kjc->ijc", a, b)
        p = _ln(p, w["m.layer_norm_out.weight"], w["m.layer_norm_out.bias"])
        return _lin(p, w, "m.linear_z") * torch.sigmoid(_lin(x, w, "m.linear_g"))

    _close(reference(w), theirs)
    # The check can tell a and b apart: swapping them breaks the agreement.
    swapped = dict(w)
    for kind in ("p.weight", "p.bias", "g.weight", "g.bias"):
        swapped[f"m.linear_a_{kind}"], swapped[f"m.linear_b_{kind}"] = (
            w[f"m.linear_b_{kind}"], w[f"m.linear_a_{kind}"]
        )
    with pytest.raises(AssertionError):
        _close(reference(swapped), theirs)


def test_outer_product_mean():
    s, n, c_m, c, c_z = 4, 5, 6, 3, 7
    config = _evoformer_configs().evoformer.outer_product_mean
    config.num_outer_channel = c
    rng = np.random.default_rng(2)
    m = rng.normal(size=(s, n, c_m)).astype(np.float32)
    mask = (rng.random((s, n)) > 0.2).astype(np.float32)
    theirs, params = _run_haiku(
        lambda: modules.OuterProductMean(config, _gc(), c_z, name="opm"), m, mask
    )
    w = _mapped(lambda b: b.outer_product_mean("m", "opm", c_m, c, c_z), params)
    x = _ln(torch.from_numpy(m).double(), w["m.layer_norm.weight"], w["m.layer_norm.bias"])
    mk = torch.from_numpy(mask).double()[..., None]
    a = _lin(x, w, "m.linear_1") * mk
    b = _lin(x, w, "m.linear_2") * mk
    outer = torch.einsum("sic,sje->ijce", a, b).reshape(n, n, c * c)
    norm = torch.einsum("sia,sja->ija", mk, mk)
    _close(_lin(outer, w, "m.linear_out") / (1e-3 + norm), theirs)


def test_msa_row_attention_with_pair_bias():
    s, n, c_m, c_z, heads = 3, 5, 8, 6, 2
    config = _evoformer_configs().evoformer.msa_row_attention_with_pair_bias
    config.num_head = heads
    rng = np.random.default_rng(3)
    m = rng.normal(size=(s, n, c_m)).astype(np.float32)
    z = rng.normal(size=(n, n, c_z)).astype(np.float32)
    mask = np.ones((s, n), np.float32)
    mask[:, -1] = 0.0
    theirs, params = _run_haiku(
        lambda: modules.MSARowAttentionWithPairBias(config, _gc(), name="row"), m, mask, z
    )
    c = c_m // heads
    w = _mapped(lambda b: b.msa_row_attention("m", "row", c_m, c_z, heads, c), params)
    x = _ln(torch.from_numpy(m).double(), w["m.layer_norm_m.weight"], w["m.layer_norm_m.bias"])
    zz = _ln(torch.from_numpy(z).double(), w["m.layer_norm_z.weight"], w["m.layer_norm_z.bias"])
    pair_bias = _lin(zz, w, "m.linear_z", bias=False).permute(2, 0, 1)  # [H, i, j]
    mask_bias = (torch.from_numpy(mask).double() - 1.0)[:, None, None, :] * 1e9
    _close(_attention(w, "m.mha", x, x, heads, c, pair_bias + mask_bias), theirs)


def test_msa_column_global_attention():
    s, n, c_e, heads = 4, 3, 8, 2
    config = _evoformer_configs().evoformer.msa_column_attention
    config.num_head = heads
    rng = np.random.default_rng(4)
    m = rng.normal(size=(s, n, c_e)).astype(np.float32)
    mask = (rng.random((s, n)) > 0.2).astype(np.float32)
    mask[0] = 1.0
    theirs, params = _run_haiku(
        lambda: modules.MSAColumnGlobalAttention(config, _gc(), name="col"), m, mask
    )
    c = c_e // heads
    def build(b):
        b.layer_norm("m.layer_norm_m", "col/query_norm", c_e)
        b.global_attention("m.ga", "col/attention", c_e, heads, c)

    w = _mapped(build, params)
    x = _ln(torch.from_numpy(m).double(), w["m.layer_norm_m.weight"], w["m.layer_norm_m.bias"])
    x = x.transpose(0, 1)  # [n, s, c_e]
    mk = torch.from_numpy(mask).double().transpose(0, 1)  # [n, s]
    q = (x * mk[..., None]).sum(1) / (mk.sum(1)[..., None] + 1e-10)
    q = _lin(q, w, "m.ga.linear_q", False).reshape(n, heads, c) / math.sqrt(c)
    k = _lin(x, w, "m.ga.linear_k", False)  # [n, s, c]
    v = _lin(x, w, "m.ga.linear_v", False)
    a = torch.softmax(q @ k.transpose(-1, -2) + (mk[:, None, :] - 1.0) * 1e9, dim=-1)
    o = (a @ v)[:, None]  # [n, 1, H, c]
    g = torch.sigmoid(_lin(x, w, "m.ga.linear_g")).reshape(n, s, heads, c)
    out = _lin((o * g).reshape(n, s, heads * c), w, "m.ga.linear_o")
    _close(out.transpose(0, 1), theirs)


def test_invariant_point_attention():
    n, c_s, c_z, heads, c, pq, pv = 6, 10, 5, 3, 4, 2, 3
    config = copy.deepcopy(af_model_config(AlphaFoldConfig.tiny()).model.heads.structure_module)
    config.num_head, config.num_scalar_qk, config.num_scalar_v = heads, c, c
    config.num_point_qk, config.num_point_v, config.num_channel = pq, pv, c_s
    rng = np.random.default_rng(5)
    s = rng.normal(size=(n, c_s)).astype(np.float32)
    z = rng.normal(size=(n, n, c_z)).astype(np.float32)
    mask = np.ones((n, 1), np.float32)
    mask[-1] = 0.0
    quaternion = rng.normal(size=(n, 4)).astype(np.float32)
    translation = rng.normal(size=(n, 3)).astype(np.float32) * 3

    def make():
        def ipa(inputs_1d, inputs_2d, seq_mask, quat, trans):
            affine = quat_affine.QuatAffine(quat, [trans[:, 0], trans[:, 1], trans[:, 2]])
            return folding.InvariantPointAttention(config, _gc(), name="ipa")(
                inputs_1d, inputs_2d, seq_mask, affine
            )
        return ipa

    theirs, params = _run_haiku(make, s, z, mask, quaternion, translation)
    w = _mapped(lambda b: b.invariant_point_attention("m", "ipa", c_s, c_z, heads, c, pq, pv),
                params)

    affine = quat_affine.QuatAffine(jnp.asarray(quaternion), list(jnp.asarray(translation).T))
    rot = torch.tensor(np.stack([np.stack(row, -1) for row in
                                 [[np.asarray(e) for e in r] for r in affine.rotation]], -2))
    rot, trans = rot.double(), torch.from_numpy(translation).double()  # [n, 3, 3], [n, 3]
    x = torch.from_numpy(s).double()
    zz = torch.from_numpy(z).double()

    def points(linear, count):
        p = _lin(x, w, linear)  # [n, 3 * heads * count], xyz-major
        p = torch.stack(torch.split(p, p.shape[-1] // 3, dim=-1), dim=-1)  # [n, H*count, 3]
        p = torch.einsum("nij,npj->npi", rot, p) + trans[:, None]
        return p.reshape(n, heads, count, 3)

    q = _lin(x, w, "m.linear_q").reshape(n, heads, c)
    k, v = torch.split(_lin(x, w, "m.linear_kv").reshape(n, heads, 2 * c), c, dim=-1)
    q_pts = points("m.linear_q_points", pq)
    k_pts, v_pts = torch.split(points("m.linear_kv_points", pq + pv), [pq, pv], dim=-2)
    logits = torch.einsum("ihc,jhc->hij", q, k) * math.sqrt(1.0 / (3 * c))
    logits = logits + math.sqrt(1.0 / 3) * _lin(zz, w, "m.linear_b").permute(2, 0, 1)
    dist = ((q_pts[:, None] - k_pts[None]) ** 2).sum(-1)  # [i, j, H, pq]
    head_w = F.softplus(w["m.head_weights"]) * math.sqrt(1.0 / (3 * (pq * 9.0 / 2)))
    logits = logits - 0.5 * (dist * head_w[:, None]).sum(-1).permute(2, 0, 1)
    sq = torch.from_numpy(mask[:, 0]).double()
    logits = logits + ((sq[:, None] * sq[None]) - 1.0) * 1e5
    a = torch.softmax(logits, dim=-1)  # [H, i, j]
    o = torch.einsum("hij,jhc->ihc", a, v).reshape(n, heads * c)
    o_pt = torch.einsum("hij,jhpx->ihpx", a, v_pts) - trans[:, None, None]
    o_pt = torch.einsum("nji,nhpj->nhpi", rot, o_pt)  # back into each residue's frame
    o_norm = torch.sqrt((o_pt**2).sum(-1) + 1e-8).reshape(n, heads * pv)
    o_pt = o_pt.reshape(n, heads * pv, 3)
    o_pair = torch.einsum("hij,ijc->ihc", a, zz).reshape(n, heads * c_z)
    cat = torch.cat([o, o_pt[..., 0], o_pt[..., 1], o_pt[..., 2], o_norm, o_pair], dim=-1)
    # The masked residue's own row is float32 noise in AlphaFold (every logit shifted by
    # -1e5); it only matters as a masked key for the others.
    _close(_lin(cat, w, "m.linear_out")[:-1], theirs[:-1])
