"""The reference <-> AlphaFold parameter mapping: completeness, strictness, exact round trips.

Checks against AlphaFold's real parameter tree and against its modules' numbers live in
test_alphafold_layouts.py (they need JAX).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from scalefold.checkpoint.alphafold_params import (
    alphafold_param_shapes,
    alphafold_params_to_state_dict,
    flatten_alphafold_params,
    import_alphafold_params,
    load_alphafold_npz,
    parameter_mapping,
    state_dict_to_alphafold_params,
    unflatten_alphafold_params,
)
from scalefold.checkpoint.reference import CheckpointError, reference_state_dict_shapes
from scalefold.model.config import AlphaFoldConfig

from ..oracles.random_params import random_reference_state_dict


def _with_tm(cfg):
    return dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, tm_enabled=True))


CONFIGS = {
    "tiny": AlphaFoldConfig.tiny(),
    "small": AlphaFoldConfig.small(),
    "mlperf": AlphaFoldConfig.mlperf(),
    "tiny_tm": _with_tm(AlphaFoldConfig.tiny()),
}
# mlperf widths, few blocks: value round trips at the real shapes without 93 M numbers.
MLPERF_FEW_BLOCKS = AlphaFoldConfig.mlperf().with_sizes(
    num_evoformer_blocks=2, num_extra_msa_blocks=2, num_template_blocks=2
)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_tensor_maps_exactly_once(name):
    cfg = CONFIGS[name]
    entries = parameter_mapping(cfg)
    refs = Counter(e.ref for e in entries)
    assert max(refs.values()) == 1
    # Each AlphaFold parameter is used once per block, by consecutive blocks 0..L-1.
    used = Counter((e.af_key, e.block) for e in entries)
    assert max(used.values()) == 1
    per_key: dict[str, list] = {}
    for e in entries:
        per_key.setdefault(e.af_key, []).append(e)
    for key, group in per_key.items():
        if group[0].num_blocks is None:
            assert len(group) == 1, key
        else:
            assert sorted(e.block for e in group) == list(range(group[0].num_blocks)), key
            assert {e.af_shape for e in group} == {group[0].af_shape}, key
    # Values are conserved: the reference and AlphaFold hold the same number of them.
    ref_total = sum(int(np.prod(s)) for s in reference_state_dict_shapes(cfg).values())
    af_total = sum(int(np.prod(s)) for s in alphafold_param_shapes(cfg).values())
    assert ref_total == af_total


def test_mlperf_mapping_is_the_reference_list():
    assert list(reference_state_dict_shapes(CONFIGS["mlperf"]).items()) == list(
        reference_state_dict_shapes().items()
    )
    assert sum(int(np.prod(s)) for s in alphafold_param_shapes(CONFIGS["mlperf"]).values()) == (
        93_229_082
    )


@pytest.mark.parametrize("cfg", [CONFIGS["tiny"], CONFIGS["tiny_tm"], MLPERF_FEW_BLOCKS],
                         ids=["tiny", "tiny_tm", "mlperf_widths"])
def test_state_dict_to_alphafold_and_back_is_exact(cfg):
    state = random_reference_state_dict(cfg, seed=3)
    af = state_dict_to_alphafold_params(state, cfg)
    shapes = alphafold_param_shapes(cfg)
    flat = flatten_alphafold_params(af)
    assert {k: v.shape for k, v in flat.items()} == shapes
    back = alphafold_params_to_state_dict(af, cfg)
    assert list(back) == list(state)
    assert all(_same(state[n], back[n]) for n in state)
    # and AlphaFold -> reference -> AlphaFold
    again = flatten_alphafold_params(state_dict_to_alphafold_params(back, cfg))
    assert all(np.array_equal(flat[k], again[k]) for k in flat)


def test_layouts_of_representative_tensors():
    cfg = CONFIGS["tiny"]
    state = random_reference_state_dict(cfg, seed=4)
    af = state_dict_to_alphafold_params(state, cfg)
    evo = "alphafold/alphafold_iteration/evoformer/evoformer_iteration"
    att = af[f"{evo}/msa_row_attention_with_pair_bias/attention"]
    heads, c_m = cfg.evoformer.num_heads_msa, cfg.evoformer.c_m
    c = cfg.evoformer.c_hidden_msa_att
    q = state["evoformer_stack.blocks.1.msa_att_row.mha.linear_q.weight"].numpy()  # [H*c, c_m]
    assert att["query_w"].shape == (2, c_m, heads, c)
    np.testing.assert_array_equal(att["query_w"][1], q.T.reshape(c_m, heads, c))
    o = state["evoformer_stack.blocks.0.msa_att_row.mha.linear_o.weight"].numpy()  # [c_m, H*c]
    np.testing.assert_array_equal(att["output_w"][0], o.T.reshape(heads, c, c_m))
    g = state["evoformer_stack.blocks.0.msa_att_row.mha.linear_g.bias"].numpy()
    np.testing.assert_array_equal(att["gating_b"][0], g.reshape(heads, c))
    # incoming triangle multiplication: AlphaFold's left is the reference's b
    tri = f"{evo}/triangle_multiplication_incoming"
    b_p = state["evoformer_stack.blocks.0.core.tri_mul_in.linear_b_p.weight"].numpy()
    np.testing.assert_array_equal(af[f"{tri}/left_projection"]["weights"][0], b_p.T)
    a_g = state["evoformer_stack.blocks.0.core.tri_mul_in.linear_a_g.bias"].numpy()
    np.testing.assert_array_equal(af[f"{tri}/right_gate"]["bias"][0], a_g)
    tro = f"{evo}/triangle_multiplication_outgoing"
    a_p = state["evoformer_stack.blocks.0.core.tri_mul_out.linear_a_p.weight"].numpy()
    np.testing.assert_array_equal(af[f"{tro}/left_projection"]["weights"][0], a_p.T)
    # outer product mean output [c, c, c_z] <- [c_z, c*c]
    w = state["evoformer_stack.blocks.0.core.outer_product_mean.linear_out.weight"].numpy()
    c_opm, c_z = cfg.evoformer.c_hidden_opm, cfg.evoformer.c_z
    np.testing.assert_array_equal(
        af[f"{evo}/outer_product_mean"]["output_w"][0], w.T.reshape(c_opm, c_opm, c_z)
    )
    # structure-module transition layers are transition, transition_1, transition_2
    fold = "alphafold/alphafold_iteration/structure_module/fold_iteration"
    t3 = state["structure_module.transition.linear_3.weight"].numpy()
    np.testing.assert_array_equal(af[f"{fold}/transition_2"]["weights"], t3.T)


def test_flat_and_nested_inputs_are_equivalent():
    cfg = CONFIGS["tiny"]
    af = state_dict_to_alphafold_params(random_reference_state_dict(cfg), cfg)
    flat = flatten_alphafold_params(af)
    assert all("//" in k for k in flat)
    assert unflatten_alphafold_params(flat).keys() == af.keys()
    a = alphafold_params_to_state_dict(af, cfg)
    b = alphafold_params_to_state_dict(flat, cfg)
    assert all(_same(a[n], b[n]) for n in a)


def test_fused_triangle_multiplication_params_are_split():
    cfg = CONFIGS["tiny"]
    state = random_reference_state_dict(cfg, seed=5)
    flat = flatten_alphafold_params(state_dict_to_alphafold_params(state, cfg))
    fused = {}
    for key, value in flat.items():
        path, _, name = key.rpartition("//")
        parent, _, module = path.rpartition("/")
        if not parent.rpartition("/")[2].startswith("triangle_multiplication_"):
            fused[key] = value
            continue
        if module.startswith("left_"):
            stem = module[len("left_"):]
            right = flat[f"{parent}/right_{stem}//{name}"]
            fused[f"{parent}/{stem}//{name}"] = np.concatenate([value, right], axis=-1)
        elif module.startswith("right_"):
            continue
        elif module == "layer_norm_input":
            fused[f"{parent}/left_norm_input//{name}"] = value
        elif module == "center_layer_norm":
            fused[f"{parent}/center_norm//{name}"] = value
        else:
            fused[key] = value
    assert len(fused) < len(flat)
    back = alphafold_params_to_state_dict(fused, cfg)
    assert all(_same(state[n], back[n]) for n in state)


def test_strict_errors_list_every_difference():
    cfg = CONFIGS["tiny"]
    flat = flatten_alphafold_params(
        state_dict_to_alphafold_params(random_reference_state_dict(cfg), cfg)
    )
    gone = "alphafold/alphafold_iteration/distogram_head/half_logits//bias"
    del flat[gone]
    flat["alphafold/alphafold_iteration/predicted_aligned_error_head/logits//bias"] = np.zeros(64)
    bad = "alphafold/alphafold_iteration/evoformer/preprocess_1d//weights"
    flat[bad] = np.zeros((21, 32), np.float32)
    with pytest.raises(CheckpointError) as info:
        alphafold_params_to_state_dict(flat, cfg)
    message = str(info.value)
    assert "1 missing, 1 unexpected, 1 mis-shaped" in message
    assert gone in message and "predicted_aligned_error_head" in message
    assert f"{bad}: [21, 32] vs [22, 32]" in message

    # a pTM model's extra head can be dropped explicitly
    flat[gone] = np.zeros(64, np.float32)
    flat[bad] = np.zeros((22, 32), np.float32)
    flat["alphafold/alphafold_iteration/predicted_aligned_error_head/logits//weights"] = (
        np.zeros((16, 64), np.float32)
    )
    alphafold_params_to_state_dict(
        flat, cfg, ignore=["alphafold/alphafold_iteration/predicted_aligned_error_head/"]
    )

    state = random_reference_state_dict(cfg)
    state.pop("structure_module.ipa.head_weights")
    with pytest.raises(CheckpointError, match="structure_module.ipa.head_weights"):
        state_dict_to_alphafold_params(state, cfg)


def test_bfloat16_state_dicts_convert_through_float32():
    cfg = CONFIGS["tiny"]
    state = random_reference_state_dict(cfg, dtype=torch.bfloat16)
    af = state_dict_to_alphafold_params(state, cfg)
    assert flatten_alphafold_params(af)[
        "alphafold/alphafold_iteration/evoformer/preprocess_1d//weights"
    ].dtype == np.float32
    back = alphafold_params_to_state_dict(af, cfg)
    assert all(torch.equal(state[n].float(), back[n]) for n in state)


def test_npz_import_into_the_model(tmp_path):
    model_module = pytest.importorskip("scalefold.model")
    cfg = CONFIGS["tiny"]
    state = random_reference_state_dict(cfg, seed=6)
    path = tmp_path / "params_model_1.npz"
    np.savez(path, **flatten_alphafold_params(state_dict_to_alphafold_params(state, cfg)))
    assert len(load_alphafold_npz(path)) == len(alphafold_param_shapes(cfg))

    model = model_module.AlphaFold(cfg)
    import_alphafold_params(model, path)
    loaded = model.state_dict()
    assert all(_same(state[n], loaded[n]) for n in state)

    with pytest.raises(CheckpointError):
        import_alphafold_params(model_module.AlphaFold(CONFIGS["small"]), path)


def test_bad_npz_files(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="broken.npz"):
        load_alphafold_npz(path)
    with pytest.raises(FileNotFoundError):
        load_alphafold_npz(tmp_path / "absent.npz")
