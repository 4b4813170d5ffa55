"""Structure module (IPA, transitions, backbone update, angle resnet, frames → atoms)
against AlphaFold's own `folding.generate_affines`, random weights, float32."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from scalefold.geometry.rigid import quat_to_rot
from scalefold.model.config import StructureModuleConfig
from scalefold.model.structure_module import StructureModule

from .af_modules import af_configs, lin, ln, rel_err, run_haiku

pytestmark = pytest.mark.oracle

N = 9
LAYERS = 3


def _map_params(p: dict) -> dict[str, torch.Tensor]:
    f = "fold_iteration/"
    ipa = f + "invariant_point_attention"
    sc = f + "rigid_sidechain/"
    sd = {}
    sd.update(ln(p["single_layer_norm"], "layer_norm_s"))
    sd.update(ln(p["pair_layer_norm"], "layer_norm_z"))
    sd.update(lin(p["initial_projection"], "linear_in"))
    sd["ipa.head_weights"] = torch.from_numpy(np.asarray(p[ipa]["trainable_point_weights"]))
    for af, ours in [("q_scalar", "linear_q"), ("kv_scalar", "linear_kv"),
                     ("q_point_local", "linear_q_points"), ("kv_point_local", "linear_kv_points"),
                     ("attention_2d", "linear_b"), ("output_projection", "linear_out")]:
        sd.update(lin(p[f"{ipa}/{af}"], f"ipa.{ours}"))
    sd.update(ln(p[f + "attention_layer_norm"], "layer_norm_ipa"))
    for i, af in enumerate(["transition", "transition_1", "transition_2"]):
        sd.update(lin(p[f + af], f"transition.linear_{i + 1}"))
    sd.update(ln(p[f + "transition_layer_norm"], "transition.layer_norm"))
    sd.update(lin(p[f + "affine_update"], "bb_update.linear"))
    sd.update(lin(p[sc + "input_projection"], "angle_resnet.linear_in"))
    sd.update(lin(p[sc + "input_projection_1"], "angle_resnet.linear_initial"))
    for i, suffix in enumerate(["", "_1"]):
        sd.update(lin(p[sc + "resblock1" + suffix], f"angle_resnet.layers.{i}.linear_1"))
        sd.update(lin(p[sc + "resblock2" + suffix], f"angle_resnet.layers.{i}.linear_2"))
    sd.update(lin(p[sc + "unnormalized_angles"], "angle_resnet.linear_out"))
    return sd


@pytest.fixture(scope="module")
def parity():
    import jax
    from alphafold.model import folding, prng

    cfg, gc = af_configs()
    smc = cfg.model.heads.structure_module
    smc.num_layer = LAYERS
    rng = np.random.default_rng(3)
    single = rng.standard_normal((N, 384)).astype(np.float32)
    pair = rng.standard_normal((N, N, 128)).astype(np.float32)
    aatype = rng.integers(0, 20, N)
    aatype[0] = 7  # glycine, no side chain
    seq_mask = np.ones(N, np.float32)

    def fn(s, z):
        batch = {"seq_mask": seq_mask, "aatype": aatype}
        key = prng.SafeKey(jax.random.PRNGKey(0))
        return folding.generate_affines({"single": s, "pair": z}, batch, smc, gc, False, key)

    p, ref = run_haiku(fn, single, pair, scale=0.05)
    ours = StructureModule(dataclasses.replace(StructureModuleConfig(), num_blocks=LAYERS))
    ours.load_state_dict(_map_params(p), strict=True)
    ours.eval()
    with torch.no_grad():
        out = ours(torch.from_numpy(single)[None], torch.from_numpy(pair)[None],
                   torch.from_numpy(aatype)[None], torch.from_numpy(seq_mask)[None])
    return ref, {k: v[0] for k, v in out.items()}


def test_single_output(parity):
    ref, out = parity
    assert rel_err(out["sm_single"], ref["act"]) < 1e-5


def test_backbone_frames_per_layer(parity):
    ref, out = parity
    affine = torch.from_numpy(np.array(ref["affine"]))  # [S, N, 7] quaternion + translation
    rot = quat_to_rot(affine[..., :4] / affine[..., :4].norm(dim=-1, keepdim=True))
    trans = affine[..., 4:] * 10.0  # AlphaFold keeps nm; frames are reported in Angstrom
    assert rel_err(out["sm_frames"][..., :3, :3], rot.numpy()) < 1e-5
    assert rel_err(out["sm_frames"][..., :3, 3], trans.numpy()) < 1e-5


def test_angles_per_layer(parity):
    ref, out = parity
    assert rel_err(out["sm_angles"], ref["sc"]["angles_sin_cos"]) < 1e-5
    assert rel_err(out["sm_unnormalized_angles"], ref["sc"]["unnormalized_angles_sin_cos"]) < 1e-5


def test_atom14_positions_per_layer(parity):
    ref, out = parity
    pos = ref["sc"]["atom_pos"]
    ref_xyz = np.stack([np.asarray(pos.x), np.asarray(pos.y), np.asarray(pos.z)], axis=-1)
    assert rel_err(out["sm_positions"], ref_xyz) < 1e-5


def test_sidechain_frames_per_layer(parity):
    ref, out = parity
    fr = ref["sc"]["frames"]
    rot = np.stack([np.stack([np.asarray(getattr(fr.rot, a + b)) for b in "xyz"], -1)
                    for a in "xyz"], -2)
    trans = np.stack([np.asarray(fr.trans.x), np.asarray(fr.trans.y), np.asarray(fr.trans.z)], -1)
    assert rel_err(out["sm_sidechain_frames"][..., :3, :3], rot) < 1e-5
    assert rel_err(out["sm_sidechain_frames"][..., :3, 3], trans) < 1e-5
