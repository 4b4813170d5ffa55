"""Parity of every loss term with AlphaFold's own JAX implementation (float32, CPU).

All inputs come from one real chain (a 48-residue crop of PDB 1BVY:F) and a coherent
synthetic prediction (see conftest.make_sample). AlphaFold runs eagerly (no jit) to keep
tracing cost out of the test time.

Where the MLPerf reference deliberately differs from AlphaFold, the reference is what
scalefold implements; those places are tested against AlphaFold with the difference
accounted for explicitly:
- FAPE normalisation (two-stage in the reference): compared against AlphaFold scaled by
  the exact factor (eps + F*P) / ((eps + F) * (eps + P)), and raw within 1e-5.
- Backbone FAPE clamping is mixed per sample by `use_clamped_fape`, as AlphaFold does.
- Different eps constants (chi angle norm 1e-8 vs 1e-6, masked means 1e-4 vs 1e-10,
  distogram 1e-8 vs 1e-6, pLDDT lDDT 1e-8 vs 1e-10, violation 1e-8 vs 1e-6): within 1e-5.
- Total: AlphaFold has no total with the reference's sqrt(crop) scaling; it is assembled
  here from AlphaFold's terms with the MLPerf weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scalefold.geometry.rigid import rot_to_quat
from scalefold.losses import (
    AlphaFoldLoss,
    LossConfig,
    backbone_loss,
    compute_renamed_ground_truth,
    distogram_loss,
    experimentally_resolved_loss,
    find_structural_violations,
    masked_msa_loss,
    plddt_loss,
    sidechain_loss,
    supervised_chi_loss,
    tm_loss,
    violation_loss,
)

from .loss_samples import collate, make_sample, to_numpy

pytestmark = pytest.mark.oracle

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
hk = pytest.importorskip("haiku")
af_config = pytest.importorskip("alphafold.model.config")
from alphafold.model import folding, modules, quat_affine, r3  # noqa: E402

RTOL = 1e-5
N_RES = 48


@pytest.fixture(scope="module")
def af_cfg():
    cfg = af_config.model_config("model_1")
    cfg.model.global_config.bfloat16 = False
    return cfg.model


@pytest.fixture(scope="module")
def sample(real_chains):
    outputs, batch = collate([make_sample(real_chains[1], 20, N_RES, seed=4, noise=6.0)])
    return outputs, batch, to_numpy(outputs), to_numpy(batch)


def _j(x):
    return jnp.asarray(np.asarray(x, dtype=np.float32) if np.asarray(x).dtype.kind == "f" else x)


def _af_frames(frames_4x4: np.ndarray, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Unit-quaternion tensor_7 for AlphaFold and the 4x4 frames AlphaFold will use."""
    f = torch.from_numpy(frames_4x4.astype(np.float64))
    quat = rot_to_quat(f[..., :3, :3])
    quat = (quat / quat.norm(dim=-1, keepdim=True)).numpy().astype(dtype)
    tensor7 = np.concatenate([quat, frames_4x4[..., :3, 3].astype(dtype)], axis=-1)
    as_4x4 = np.zeros(frames_4x4.shape, dtype=dtype)
    as_4x4[..., :3, :3] = _rot_list_to_array(
        quat_affine.QuatAffine.from_tensor(jnp.asarray(tensor7)).rotation
    )
    as_4x4[..., :3, 3] = tensor7[..., 4:]
    as_4x4[..., 3, 3] = 1.0
    return tensor7, as_4x4


def _rot_list_to_array(rot) -> np.ndarray:
    return np.stack([np.stack([np.asarray(x) for x in row], axis=-1) for row in rot], axis=-2)


def _flat12(frames_4x4: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [frames_4x4[..., :3, :3].reshape(*frames_4x4.shape[:-2], 9), frames_4x4[..., :3, 3]], -1
    ).astype(np.float32)


def _fape_norm_factor(frames_mask: np.ndarray, positions_mask: np.ndarray, eps=1e-4) -> float:
    f, p = float(frames_mask.sum()), float(positions_mask.sum())
    return (eps + f * p) / ((eps + f) * (eps + p))


@pytest.mark.parametrize("clamped", [1.0, 0.0])
def test_backbone_fape(sample, af_cfg, clamped):
    _, _, o, b = sample
    traj7, traj = _af_frames(o["sm_frames"])
    gt7, gt = _af_frames(b["backbone_rigid_tensor"])
    mask = b["backbone_rigid_mask"].astype(np.float32)
    ret = {"loss": jnp.asarray(0.0)}
    folding.backbone_loss(
        ret,
        {
            "backbone_affine_tensor": _j(gt7),
            "backbone_affine_mask": _j(mask),
            "use_clamped_fape": _j(clamped),
        },
        {"traj": _j(traj7)},
        af_cfg.heads.structure_module,
    )
    theirs = float(ret["loss"])
    ours = float(
        backbone_loss(
            torch.from_numpy(gt)[None],
            torch.from_numpy(mask)[None],
            torch.from_numpy(traj)[None],
            use_clamped_fape=torch.tensor([clamped]),
        )[0]
    )
    assert ours == pytest.approx(theirs * _fape_norm_factor(mask, mask), rel=2e-6)
    assert ours == pytest.approx(theirs, rel=RTOL)
    # The two settings must really differ on this input (errors beyond 10 Å exist).
    unclamped_vs_clamped = backbone_loss(
        torch.from_numpy(gt)[None],
        torch.from_numpy(mask)[None],
        torch.from_numpy(traj)[None],
        use_clamped_fape=torch.tensor([1.0 - clamped]),
    )
    assert abs(float(unclamped_vs_clamped[0]) - ours) > 1e-3


def test_renamed_ground_truth(sample):
    _, _, o, b = sample
    pred = o["sm_positions"][-1].copy()
    # Swap the symmetric atoms of some residues in the prediction so that the renaming
    # has something to find.
    swapped = b["atom14_alt_gt_positions"] + 0.1 * np.random.default_rng(0).standard_normal(
        pred.shape
    )
    ambiguous_res = b["atom14_atom_is_ambiguous"].max(-1) > 0
    flip = ambiguous_res & (np.arange(N_RES) % 2 == 0)
    pred[flip] = swapped[flip]
    keys = (
        "atom14_gt_positions",
        "atom14_alt_gt_positions",
        "atom14_atom_is_ambiguous",
        "atom14_gt_exists",
        "atom14_alt_gt_exists",
        "atom14_atom_exists",
    )
    theirs = folding.compute_renamed_ground_truth({k: _j(b[k]) for k in keys}, _j(pred))
    ours = compute_renamed_ground_truth(
        *(torch.from_numpy(b[k].astype(np.float32)) for k in keys[:5]),
        atom14_pred_positions=torch.from_numpy(pred.astype(np.float32)),
    )
    alt = np.asarray(theirs["alt_naming_is_better"])
    assert alt.sum() >= 1 and flip.sum() >= 1
    for key in ("alt_naming_is_better", "renamed_atom14_gt_positions", "renamed_atom14_gt_exists"):
        np.testing.assert_array_equal(ours[key].numpy(), np.asarray(theirs[key]))


def test_sidechain_fape(sample, af_cfg):
    _, _, o, b = sample
    rng = np.random.default_rng(1)
    alt = (rng.random(N_RES) < 0.5).astype(np.float32) * (
        b["rigidgroups_group_is_ambiguous"].max(-1) > 0
    )
    renamed_pos = np.where(
        alt[:, None, None] > 0, b["atom14_alt_gt_positions"], b["atom14_gt_positions"]
    ).astype(np.float32)
    renamed_exists = np.where(
        alt[:, None] > 0, b["atom14_alt_gt_exists"], b["atom14_gt_exists"]
    ).astype(np.float32)
    sc_frames = o["sm_sidechain_frames"].astype(np.float32)  # [S, N, 8, 4, 4]
    atom_pos = o["sm_positions"].astype(np.float32)  # [S, N, 14, 3]
    value = {
        "alt_naming_is_better": _j(alt),
        "renamed_atom14_gt_positions": _j(renamed_pos),
        "renamed_atom14_gt_exists": _j(renamed_exists),
        "sidechains": {
            "frames": r3.rigids_from_tensor4x4(_j(sc_frames)),
            "atom_pos": r3.vecs_from_tensor(_j(atom_pos)),
        },
    }
    af_batch = {
        "rigidgroups_gt_frames": _j(_flat12(b["rigidgroups_gt_frames"])),
        "rigidgroups_alt_gt_frames": _j(_flat12(b["rigidgroups_alt_gt_frames"])),
        "rigidgroups_gt_exists": _j(b["rigidgroups_gt_exists"]),
    }
    theirs = float(folding.sidechain_loss(af_batch, value, af_cfg.heads.structure_module)["loss"])

    def t(x):
        return torch.from_numpy(np.asarray(x, dtype=np.float32))[None]

    ours = float(
        sidechain_loss(
            t(sc_frames),
            t(atom_pos),
            t(b["rigidgroups_gt_frames"]),
            t(b["rigidgroups_alt_gt_frames"]),
            t(b["rigidgroups_gt_exists"]),
            t(renamed_pos),
            t(renamed_exists),
            t(alt),
        )[0]
    )
    factor = _fape_norm_factor(b["rigidgroups_gt_exists"], renamed_exists)
    assert ours == pytest.approx(theirs * factor, rel=2e-6)
    assert ours == pytest.approx(theirs, rel=RTOL)


def _af_chi_loss(af_cfg, o, b, chi_weight, angle_norm_weight):
    sm = af_cfg.heads.structure_module
    cfg = type(sm)(sm.to_dict())
    cfg.chi_weight, cfg.angle_norm_weight = chi_weight, angle_norm_weight
    chi = np.arctan2(b["chi_angles_sin_cos"][..., 0], b["chi_angles_sin_cos"][..., 1])
    ret = {"loss": jnp.asarray(0.0)}
    folding.supervised_chi_loss(
        ret,
        {
            "seq_mask": _j(b["seq_mask"]),
            "chi_mask": _j(b["chi_mask"]),
            "chi_angles": _j(chi),
            "aatype": jnp.asarray(b["aatype"]),
        },
        {
            "sidechains": {
                "angles_sin_cos": _j(o["sm_angles"]),
                "unnormalized_angles_sin_cos": _j(o["sm_unnormalized_angles"]),
            }
        },
        cfg,
    )
    return float(ret["loss"])


def _our_chi_loss(o, b, chi_weight, angle_norm_weight, eps):
    def t(key, src):
        x = src[key]
        return torch.from_numpy(x.astype(np.float32) if x.dtype.kind == "f" else x)[None]

    return float(
        supervised_chi_loss(
            t("sm_angles", o),
            t("sm_unnormalized_angles", o),
            t("aatype", b),
            t("seq_mask", b),
            t("chi_mask", b),
            t("chi_angles_sin_cos", b),
            chi_weight=chi_weight,
            angle_norm_weight=angle_norm_weight,
            eps=eps,
        )[0]
    )


def test_supervised_chi(sample, af_cfg):
    _, _, o, b = sample
    # Each part separately, with AlphaFold's hard-coded angle-norm eps ...
    assert _our_chi_loss(o, b, 1.0, 0.0, 1e-6) == pytest.approx(
        _af_chi_loss(af_cfg, o, b, 1.0, 0.0), rel=RTOL
    )
    assert _our_chi_loss(o, b, 0.0, 1.0, 1e-6) == pytest.approx(
        _af_chi_loss(af_cfg, o, b, 0.0, 1.0), rel=RTOL
    )
    # ... and the MLPerf term with the reference's eps.
    assert _our_chi_loss(o, b, 0.5, 0.01, 1e-8) == pytest.approx(
        _af_chi_loss(af_cfg, o, b, 0.5, 0.01), rel=RTOL
    )


def test_distogram(sample, af_cfg):
    _, _, o, b = sample
    cfg = af_cfg.heads.distogram
    edges = jnp.linspace(cfg.first_break, cfg.last_break, cfg.num_bins - 1)
    theirs = modules._distogram_log_loss(
        _j(o["distogram_logits"]),
        edges,
        {"pseudo_beta": _j(b["pseudo_beta"]), "pseudo_beta_mask": _j(b["pseudo_beta_mask"])},
        cfg.num_bins,
    )["loss"]
    ours = distogram_loss(
        torch.from_numpy(o["distogram_logits"].astype(np.float32))[None],
        torch.from_numpy(b["pseudo_beta"].astype(np.float32))[None],
        torch.from_numpy(b["pseudo_beta_mask"].astype(np.float32))[None],
    )
    assert float(ours[0]) == pytest.approx(float(theirs), rel=RTOL)


def _head_loss(head_cls, head_cfg, global_cfg, value, batch):
    def fn(value, batch):
        return head_cls(head_cfg, global_cfg).loss(value, batch)

    return float(hk.transform(fn).apply({}, None, value, batch)["loss"])


def test_masked_msa(sample, af_cfg):
    _, _, o, b = sample
    theirs = _head_loss(
        modules.MaskedMsaHead,
        af_cfg.heads.masked_msa,
        af_cfg.global_config,
        {"logits": _j(o["masked_msa_logits"])},
        {"true_msa": jnp.asarray(b["true_msa"]), "bert_mask": _j(b["bert_mask"])},
    )
    ours = masked_msa_loss(
        torch.from_numpy(o["masked_msa_logits"].astype(np.float32))[None],
        torch.from_numpy(b["true_msa"])[None],
        torch.from_numpy(b["bert_mask"].astype(np.float32))[None],
    )
    assert float(ours[0]) == pytest.approx(theirs, rel=RTOL)


@pytest.mark.parametrize("resolution", [2.0, 3.0, 0.0])
def test_plddt(sample, af_cfg, resolution):
    _, _, o, b = sample
    theirs = _head_loss(
        modules.PredictedLDDTHead,
        af_cfg.heads.predicted_lddt,
        af_cfg.global_config,
        {
            "structure_module": {"final_atom_positions": _j(o["final_atom_positions"])},
            "predicted_lddt": {"logits": _j(o["lddt_logits"])},
        },
        {
            "all_atom_positions": _j(b["all_atom_positions"]),
            "all_atom_mask": _j(b["all_atom_mask"]),
            "resolution": _j(resolution),
        },
    )
    ours = plddt_loss(
        torch.from_numpy(o["lddt_logits"].astype(np.float32))[None],
        torch.from_numpy(o["final_atom_positions"].astype(np.float32))[None],
        torch.from_numpy(b["all_atom_positions"].astype(np.float32))[None],
        torch.from_numpy(b["all_atom_mask"].astype(np.float32))[None],
        torch.tensor([resolution]),
    )
    if resolution == 0.0:
        assert float(ours[0]) == 0.0 == theirs
    else:
        assert float(ours[0]) == pytest.approx(theirs, rel=RTOL)


def test_experimentally_resolved(sample, af_cfg):
    _, _, o, b = sample
    theirs = _head_loss(
        modules.ExperimentallyResolvedHead,
        af_cfg.heads.experimentally_resolved,
        af_cfg.global_config,
        {"logits": _j(o["experimentally_resolved_logits"])},
        {
            "atom37_atom_exists": _j(b["atom37_atom_exists"]),
            "all_atom_mask": _j(b["all_atom_mask"]),
            "resolution": _j(1.5),
        },
    )
    ours = experimentally_resolved_loss(
        torch.from_numpy(o["experimentally_resolved_logits"].astype(np.float32))[None],
        torch.from_numpy(b["atom37_atom_exists"].astype(np.float32))[None],
        torch.from_numpy(b["all_atom_mask"].astype(np.float32))[None],
        torch.tensor([1.5]),
    )
    assert float(ours[0]) == pytest.approx(theirs, rel=RTOL)


def test_tm(sample, af_cfg):
    # The target bins a squared aligned error; float32 rounding differences between two
    # correct implementations flip a pair now and then, and one flipped pair moves the
    # loss by ~1e-3 here. The comparison therefore runs in float64 on both sides.
    _, _, o, b = sample
    with jax.enable_x64(True):
        pred7, pred = _af_frames(o["final_affine_tensor"], np.float64)
        gt7, gt = _af_frames(b["backbone_rigid_tensor"], np.float64)
        cfg = af_cfg.heads.predicted_aligned_error
        breaks = jnp.linspace(0.0, cfg.max_error_bin, cfg.num_bins - 1)
        theirs = _head_loss(
            modules.PredictedAlignedErrorHead,
            cfg,
            af_cfg.global_config,
            {
                "structure_module": {"final_affines": jnp.asarray(pred7)},
                "predicted_aligned_error": {
                    "logits": jnp.asarray(o["tm_logits"]),
                    "breaks": breaks,
                },
            },
            {
                "backbone_affine_tensor": jnp.asarray(gt7),
                "backbone_affine_mask": jnp.asarray(b["backbone_rigid_mask"]),
                "resolution": jnp.asarray(2.0),
            },
        )
    ours = tm_loss(
        torch.from_numpy(o["tm_logits"])[None],
        torch.from_numpy(pred)[None],
        torch.from_numpy(gt)[None],
        torch.from_numpy(b["backbone_rigid_mask"])[None],
        torch.tensor([2.0], dtype=torch.float64),
    )
    assert float(ours[0]) == pytest.approx(theirs, rel=RTOL)


def test_structural_violations(sample, af_cfg):
    _, _, o, b = sample
    rng = np.random.default_rng(2)
    pred = b["atom14_gt_positions"] + 0.25 * rng.standard_normal(b["atom14_gt_positions"].shape)
    pred[10] += np.array([1.5, 0.5, 0.0])  # a displaced residue: bond, angle and clash terms
    pred = (pred * b["atom14_atom_exists"][..., None]).astype(np.float32)
    residue_index = b["residue_index"].copy()
    residue_index[30:] += 3  # a chain break
    sm = af_cfg.heads.structure_module
    af_batch = {
        "atom14_atom_exists": _j(b["atom14_atom_exists"]),
        "residue_index": jnp.asarray(residue_index),
        "aatype": jnp.asarray(b["aatype"]),
        "residx_atom14_to_atom37": jnp.asarray(b["residx_atom14_to_atom37"]),
    }
    theirs = folding.find_structural_violations(af_batch, _j(pred), sm)
    ret = {"loss": jnp.asarray(0.0)}
    folding.structural_violation_loss(ret, af_batch, {"violations": theirs}, sm)

    ours = find_structural_violations(
        torch.from_numpy(pred)[None],
        torch.from_numpy(b["aatype"])[None],
        torch.from_numpy(residue_index)[None],
        torch.from_numpy(b["atom14_atom_exists"].astype(np.float32))[None],
        torch.from_numpy(b["residx_atom14_to_atom37"])[None],
    )
    for group in ("between_residues", "within_residues"):
        for key, value in theirs[group].items():
            np.testing.assert_allclose(
                ours[group][key][0].numpy(),
                np.asarray(value),
                rtol=RTOL,
                atol=1e-6,
                err_msg=f"{group}/{key}",
            )
    np.testing.assert_array_equal(
        ours["total_per_residue_violations_mask"][0].numpy(),
        np.asarray(theirs["total_per_residue_violations_mask"]),
    )
    assert float(theirs["between_residues"]["clashes_mean_loss"]) > 0
    assert float(theirs["between_residues"]["bonds_c_n_loss_mean"]) > 0
    our_loss = violation_loss(
        ours, torch.from_numpy(b["atom14_atom_exists"].astype(np.float32))[None]
    )
    assert float(our_loss[0]) == pytest.approx(
        float(ret["loss"]) / sm.structural_violation_loss_weight, rel=RTOL
    )


@pytest.mark.parametrize("clamped", [1.0, 0.0])
def test_total_loss(sample, af_cfg, clamped):
    """The assembled total against AlphaFold's terms with the MLPerf weights and scaling."""
    outputs, batch, o, b = sample
    sm = af_cfg.heads.structure_module

    traj7, traj = _af_frames(o["sm_frames"])
    gt7, gt = _af_frames(b["backbone_rigid_tensor"])
    # The module runs on exactly the frames AlphaFold sees.
    outputs = dict(outputs, sm_frames=torch.from_numpy(traj)[None])
    batch = dict(batch, backbone_rigid_tensor=torch.from_numpy(gt)[None])

    keys = (
        "atom14_gt_positions",
        "atom14_alt_gt_positions",
        "atom14_atom_is_ambiguous",
        "atom14_gt_exists",
        "atom14_alt_gt_exists",
        "atom14_atom_exists",
    )
    sc_batch = {k: _j(b[k]) for k in keys}
    sc_batch.update(
        rigidgroups_gt_frames=_j(_flat12(b["rigidgroups_gt_frames"])),
        rigidgroups_alt_gt_frames=_j(_flat12(b["rigidgroups_alt_gt_frames"])),
        rigidgroups_gt_exists=_j(b["rigidgroups_gt_exists"]),
        backbone_affine_tensor=_j(gt7),
        backbone_affine_mask=_j(b["backbone_rigid_mask"]),
        use_clamped_fape=_j(clamped),
        seq_mask=_j(b["seq_mask"]),
        chi_mask=_j(b["chi_mask"]),
        chi_angles=_j(np.arctan2(b["chi_angles_sin_cos"][..., 0], b["chi_angles_sin_cos"][..., 1])),
        aatype=jnp.asarray(b["aatype"]),
    )
    value = {
        "traj": _j(traj7),
        "final_atom14_positions": _j(o["sm_positions"][-1]),
        "sidechains": {
            "frames": r3.rigids_from_tensor4x4(_j(o["sm_sidechain_frames"])),
            "atom_pos": r3.vecs_from_tensor(_j(o["sm_positions"])),
            "angles_sin_cos": _j(o["sm_angles"]),
            "unnormalized_angles_sin_cos": _j(o["sm_unnormalized_angles"]),
        },
    }
    sm_cfg = type(sm)(sm.to_dict())
    sm_cfg.compute_in_graph_metrics = False
    sm_cfg.structural_violation_loss_weight = 0.0

    def sm_loss(value, batch):
        return folding.StructureModule(sm_cfg, af_cfg.global_config).loss(value, batch)["loss"]

    af_sm = float(hk.transform(sm_loss).apply({}, None, value, sc_batch))
    dist = float(
        modules._distogram_log_loss(
            _j(o["distogram_logits"]),
            jnp.linspace(2.3125, 21.6875, 63),
            {"pseudo_beta": _j(b["pseudo_beta"]), "pseudo_beta_mask": _j(b["pseudo_beta_mask"])},
            64,
        )["loss"]
    )
    msa = _head_loss(
        modules.MaskedMsaHead,
        af_cfg.heads.masked_msa,
        af_cfg.global_config,
        {"logits": _j(o["masked_msa_logits"])},
        {"true_msa": jnp.asarray(b["true_msa"]), "bert_mask": _j(b["bert_mask"])},
    )
    plddt = _head_loss(
        modules.PredictedLDDTHead,
        af_cfg.heads.predicted_lddt,
        af_cfg.global_config,
        {
            "structure_module": {"final_atom_positions": _j(o["final_atom_positions"])},
            "predicted_lddt": {"logits": _j(o["lddt_logits"])},
        },
        {
            "all_atom_positions": _j(b["all_atom_positions"]),
            "all_atom_mask": _j(b["all_atom_mask"]),
            "resolution": _j(b["resolution"]),
        },
    )
    cfg = LossConfig.mlperf()
    # AlphaFold's structure-module loss already carries 0.5/0.5 FAPE and the chi weights.
    weighted = (
        cfg.fape.weight * af_sm
        + cfg.distogram.weight * dist
        + cfg.masked_msa.weight * msa
        + cfg.plddt.weight * plddt
    )
    expected = math.sqrt(min(float(b["seq_length"]), N_RES)) * weighted

    total, breakdown = AlphaFoldLoss(cfg)(outputs, batch, use_clamped_fape=torch.tensor([clamped]))
    assert float(total) == pytest.approx(expected, rel=RTOL)
    assert float(breakdown["weighted_total_loss"]) == pytest.approx(weighted, rel=RTOL)
    assert float(breakdown["distogram"]) == pytest.approx(dist, rel=RTOL)
    assert float(breakdown["masked_msa"]) == pytest.approx(msa, rel=RTOL)
    assert float(breakdown["plddt_loss"]) == pytest.approx(plddt, rel=RTOL)
