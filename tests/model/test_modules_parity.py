"""Module-level parity with AlphaFold's own JAX modules (random weights, float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalefold.model.msa import (
    MSAColumnAttention,
    MSAColumnGlobalAttention,
    MSARowAttentionWithPairBias,
    Transition,
)
from scalefold.model.pair import OuterProductMean, TriangleAttention, TriangleMultiplication

from .af_modules import af_configs, attention, lin, lin_flat, ln, rel_err, run_haiku

pytestmark = pytest.mark.oracle

TOL = 1e-5
S, N, C_M, C_Z = 5, 7, 32, 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    msa = rng.standard_normal((S, N, C_M)).astype(np.float32)
    pair = rng.standard_normal((N, N, C_Z)).astype(np.float32)
    msa_mask = (rng.random((S, N)) > 0.2).astype(np.float32)
    seq_mask = np.ones(N, np.float32)
    seq_mask[-2:] = 0.0  # padding at the end, as cropping produces
    pair_mask = seq_mask[:, None] * seq_mask[None, :]
    return msa, pair, msa_mask, pair_mask


def _t(x):
    return torch.from_numpy(np.asarray(x))[None]  # add our leading batch dim


def _load(module, sd):
    module.load_state_dict(sd, strict=True)
    return module.eval()


@pytest.mark.parametrize("outgoing", [True, False])
def test_triangle_multiplication(data, outgoing):
    from alphafold.model import modules

    _, pair, _, pair_mask = data
    cfg, gc = af_configs()
    evo = cfg.model.embeddings_and_evoformer.evoformer
    name = "triangle_multiplication_" + ("outgoing" if outgoing else "incoming")
    c = evo[name]
    c.num_intermediate_channel = 12

    def fn(x, m):
        return modules.TriangleMultiplication(c, gc, name=name)(x, m, is_training=False)

    p, ref = run_haiku(fn, pair, pair_mask)
    p = {k.split("/")[-1]: v for k, v in p.items()}
    # AlphaFold's incoming update contracts the *right* projection on the first index:
    # the reference's `a` is AlphaFold's right projection there.
    a, b = ("left", "right") if outgoing else ("right", "left")
    sd = {}
    sd.update(lin(p[f"{a}_projection"], "linear_a_p"))
    sd.update(lin(p[f"{a}_gate"], "linear_a_g"))
    sd.update(lin(p[f"{b}_projection"], "linear_b_p"))
    sd.update(lin(p[f"{b}_gate"], "linear_b_g"))
    sd.update(lin(p["gating_linear"], "linear_g"))
    sd.update(lin(p["output_projection"], "linear_z"))
    sd.update(ln(p["layer_norm_input"], "layer_norm_in"))
    sd.update(ln(p["center_layer_norm"], "layer_norm_out"))
    ours = _load(TriangleMultiplication(C_Z, 12, outgoing=outgoing), sd)
    out = ours(_t(pair), _t(pair_mask))[0]
    assert rel_err(out, ref) < TOL


@pytest.mark.parametrize("starting", [True, False])
def test_triangle_attention(data, starting):
    from alphafold.model import modules

    _, pair, _, pair_mask = data
    cfg, gc = af_configs()
    evo = cfg.model.embeddings_and_evoformer.evoformer
    name = "triangle_attention_" + ("starting_node" if starting else "ending_node")
    c = evo[name]
    c.num_head = 4

    def fn(x, m):
        return modules.TriangleAttention(c, gc, name=name)(x, m, is_training=False)

    p, ref = run_haiku(fn, pair, pair_mask)
    p = {k.split(name + "/")[-1] if "/" in k else "": v for k, v in p.items()}
    sd = {}
    sd.update(ln(p["query_norm"], "layer_norm"))
    sd.update(lin_flat(p[""]["feat_2d_weights"], "linear"))
    sd.update(attention(p["attention"], "mha"))
    ours = _load(TriangleAttention(C_Z, C_Z // 4, 4, 1e9, starting=starting), sd)
    out = ours(_t(pair), _t(pair_mask))[0]
    assert rel_err(out, ref) < TOL


def test_msa_row_attention_with_pair_bias(data):
    from alphafold.model import modules

    msa, pair, msa_mask, _ = data
    cfg, gc = af_configs()
    c = cfg.model.embeddings_and_evoformer.evoformer.msa_row_attention_with_pair_bias
    name = "msa_row_attention_with_pair_bias"

    def fn(m, mm, z):
        return modules.MSARowAttentionWithPairBias(c, gc, name=name)(m, mm, z, is_training=False)

    p, ref = run_haiku(fn, msa, msa_mask, pair)
    p = {k.split(name + "/")[-1] if "/" in k else "": v for k, v in p.items()}
    sd = {}
    sd.update(ln(p["query_norm"], "layer_norm_m"))
    sd.update(ln(p["feat_2d_norm"], "layer_norm_z"))
    sd.update(lin_flat(p[""]["feat_2d_weights"], "linear_z"))
    sd.update(attention(p["attention"], "mha"))
    ours = _load(MSARowAttentionWithPairBias(C_M, C_Z, C_M // 8, 8, 1e9), sd)
    out = ours(_t(msa), _t(pair), _t(msa_mask))[0]
    assert rel_err(out, ref) < TOL


def test_msa_column_attention(data):
    from alphafold.model import modules

    msa, _, msa_mask, _ = data
    cfg, gc = af_configs()
    c = cfg.model.embeddings_and_evoformer.evoformer.msa_column_attention
    name = "msa_column_attention"

    def fn(m, mm):
        return modules.MSAColumnAttention(c, gc, name=name)(m, mm, is_training=False)

    p, ref = run_haiku(fn, msa, msa_mask)
    p = {k.split(name + "/")[-1] if "/" in k else "": v for k, v in p.items()}
    sd = {}
    sd.update(ln(p["query_norm"], "layer_norm_m"))
    sd.update(attention(p["attention"], "mha"))
    ours = _load(MSAColumnAttention(C_M, C_M // 8, 8, 1e9), sd)
    out = ours(_t(msa), _t(msa_mask))[0]
    assert rel_err(out, ref) < TOL


def test_msa_column_global_attention(data):
    from alphafold.model import modules

    msa, _, msa_mask, _ = data
    cfg, gc = af_configs()
    c = cfg.model.embeddings_and_evoformer.evoformer.msa_column_attention
    name = "msa_column_global_attention"

    def fn(m, mm):
        return modules.MSAColumnGlobalAttention(c, gc, name=name)(m, mm, is_training=False)

    p, ref = run_haiku(fn, msa, msa_mask)
    p = {k.split(name + "/")[-1] if "/" in k else "": v for k, v in p.items()}
    a = p["attention"]
    sd = {}
    sd.update(ln(p["query_norm"], "layer_norm_m"))
    sd.update(lin_flat(a["query_w"], "global_attention.linear_q"))
    sd.update(lin_flat(a["key_w"], "global_attention.linear_k"))
    sd.update(lin_flat(a["value_w"], "global_attention.linear_v"))
    sd.update(lin_flat(a["gating_w"], "global_attention.linear_g", a["gating_b"]))
    out_w = np.asarray(a["output_w"])
    sd.update(lin_flat(out_w.reshape(-1, out_w.shape[-1]), "global_attention.linear_o",
                       a["output_b"]))
    # eps: the reference's 1e-8 vs AlphaFold's 1e-10 only matters for fully masked columns.
    ours = _load(MSAColumnGlobalAttention(C_M, C_M // 8, 8, 1e9, 1e-10), sd)
    out = ours(_t(msa), _t(msa_mask))[0]
    assert rel_err(out, ref) < TOL


def test_outer_product_mean(data):
    from alphafold.model import modules

    msa, _, msa_mask, _ = data
    cfg, gc = af_configs()
    c = cfg.model.embeddings_and_evoformer.evoformer.outer_product_mean
    c.num_outer_channel = 6
    name = "outer_product_mean"

    def fn(m, mm):
        return modules.OuterProductMean(c, gc, C_Z, name=name)(m, mm, is_training=False)

    p, ref = run_haiku(fn, msa, msa_mask)
    p = {k.split(name + "/")[-1] if "/" in k else "": v for k, v in p.items()}
    sd = {}
    sd.update(ln(p["layer_norm_input"], "layer_norm"))
    sd.update(lin(p["left_projection"], "linear_1"))
    sd.update(lin(p["right_projection"], "linear_2"))
    w = np.asarray(p[""]["output_w"])  # [c, c, c_z]
    sd.update(lin_flat(w.reshape(-1, w.shape[-1]), "linear_out", p[""]["output_b"]))
    ours = _load(OuterProductMean(C_M, C_Z, 6, 1e-3), sd)
    out = ours(_t(msa), _t(msa_mask))[0]
    assert rel_err(out, ref) < TOL


def test_transition(data):
    from alphafold.model import modules

    msa, _, msa_mask, _ = data
    cfg, gc = af_configs()
    c = cfg.model.embeddings_and_evoformer.evoformer.msa_transition
    name = "msa_transition"

    def fn(m, mm):
        return modules.Transition(c, gc, name=name)(m, mm, is_training=False)

    p, ref = run_haiku(fn, msa, msa_mask)
    p = {k.split(name + "/")[-1]: v for k, v in p.items()}
    sd = {}
    sd.update(ln(p["input_layer_norm"], "layer_norm"))
    sd.update(lin(p["transition1"], "linear_1"))
    sd.update(lin(p["transition2"], "linear_2"))
    ours = _load(Transition(C_M, 4), sd)
    out = ours(_t(msa))[0]
    assert rel_err(out, ref) < TOL
