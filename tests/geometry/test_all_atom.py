"""scalefold.geometry.all_atom: parity with AlphaFold's JAX all_atom code on a protein-like
chain and a real crystal structure, self-consistency, batching, gradients and
shape-static (data-independent) execution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalefold.geometry import residue_constants as rc
from scalefold.geometry.all_atom import (
    atom14_to_atom37,
    atom37_to_atom14,
    atom37_to_frames,
    atom37_to_torsion_angles,
    backbone_frames,
    frames_to_atom14_positions,
    get_backbone_frames,
    get_chi_angles,
    ground_truth_features,
    make_atom14_masks,
    make_atom14_positions,
    pseudo_beta,
    torsion_angles_to_frames,
)
from scalefold.geometry.rigid import Rigid, quat_backbone_update, rigid_from_quat

from .geometry_helpers import random_rigid, random_sin_cos

ATOL = 1e-6  # float32 parity on unit-scale quantities
ATOL_POS = 2e-5  # float32 parity on coordinates of magnitude ~10-30 Angstrom


def _f32(chain: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.float() if v.is_floating_point() else v) for k, v in chain.items()}


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + np.pi, 2 * np.pi) - np.pi


# ---------------------------------------------------------------------------------------
# AlphaFold oracle helpers.
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def af():
    pytest.importorskip("jax")
    pytest.importorskip("alphafold.model.all_atom")
    from alphafold.model import all_atom, r3

    return all_atom, r3


def _r3_rigid(rigid: Rigid, r3):
    return r3.rigids_from_tensor4x4(rigid.to_tensor_4x4().numpy())


def _r3_to_4x4(r) -> np.ndarray:
    rot = np.stack(
        [np.stack([np.asarray(getattr(r.rot, a + b)) for b in "xyz"], -1) for a in "xyz"], -2
    )
    trans = np.stack([np.asarray(getattr(r.trans, a)) for a in "xyz"], -1)
    out = np.zeros(rot.shape[:-2] + (4, 4), np.float32)
    out[..., :3, :3], out[..., :3, 3], out[..., 3, 3] = rot, trans, 1.0
    return out


def _flat12_to_4x4(flat: np.ndarray) -> np.ndarray:
    flat = np.asarray(flat)
    out = np.zeros(flat.shape[:-1] + (4, 4), np.float32)
    out[..., :3, :3] = flat[..., :9].reshape(flat.shape[:-1] + (3, 3))
    out[..., :3, 3] = flat[..., 9:]
    out[..., 3, 3] = 1.0
    return out


def _vecs(v) -> np.ndarray:
    return np.stack([np.asarray(v.x), np.asarray(v.y), np.asarray(v.z)], -1)


# ---------------------------------------------------------------------------------------
# Structure-module path: torsions -> frames -> atom14 -> atom37.
# ---------------------------------------------------------------------------------------


@pytest.mark.oracle
def test_torsions_to_atoms_match_alphafold(af):
    all_atom, r3 = af
    gen = torch.Generator().manual_seed(0)
    aatype = torch.arange(21).roll(5)
    backbone = random_rigid(gen, (21,))
    angles = random_sin_cos(gen, (21, 7))
    frames = torsion_angles_to_frames(backbone, angles, aatype)
    atom14 = frames_to_atom14_positions(frames, aatype)

    af_frames = all_atom.torsion_angles_to_frames(
        aatype.numpy(), _r3_rigid(backbone, r3), angles.numpy()
    )
    af_atom14 = _vecs(
        all_atom.frames_and_literature_positions_to_atom14_pos(aatype.numpy(), af_frames)
    )
    assert frames.shape == (21, 8)
    np.testing.assert_allclose(
        frames.rot.numpy(), _r3_to_4x4(af_frames)[..., :3, :3], atol=ATOL, rtol=0
    )
    np.testing.assert_allclose(
        frames.trans.numpy(), _r3_to_4x4(af_frames)[..., :3, 3], atol=ATOL_POS, rtol=0
    )
    np.testing.assert_allclose(atom14.numpy(), af_atom14, atol=ATOL_POS, rtol=0)

    masks = make_atom14_masks(aatype)
    atom37 = atom14_to_atom37(atom14, masks["residx_atom37_to_atom14"], masks["atom37_atom_exists"])
    af_batch = {k: v.numpy() for k, v in masks.items()}
    np.testing.assert_array_equal(
        atom37.numpy(), np.asarray(all_atom.atom14_to_atom37(atom14.numpy(), af_batch))
    )
    back = atom37_to_atom14(atom37, masks["residx_atom14_to_atom37"], masks["atom14_atom_exists"])
    np.testing.assert_array_equal(
        back.numpy(), np.asarray(all_atom.atom37_to_atom14(atom37.numpy(), af_batch))
    )
    np.testing.assert_array_equal(back.numpy(), atom14.numpy())
    # Per-atom data without a coordinate axis.
    mask14 = masks["atom14_atom_exists"]
    np.testing.assert_array_equal(
        atom14_to_atom37(
            mask14, masks["residx_atom37_to_atom14"], masks["atom37_atom_exists"]
        ).numpy(),
        masks["atom37_atom_exists"].numpy(),
    )


def test_batch_dims_match_per_sample():
    gen = torch.Generator().manual_seed(1)
    aatype = torch.randint(0, 21, (2, 3, 9), generator=gen)
    backbone = random_rigid(gen, (2, 3, 9))
    angles = random_sin_cos(gen, (2, 3, 9, 7))
    frames = torsion_angles_to_frames(backbone, angles, aatype)
    atom14 = frames_to_atom14_positions(frames, aatype)
    assert frames.shape == (2, 3, 9, 8) and atom14.shape == (2, 3, 9, 14, 3)
    for i in range(2):
        for j in range(3):
            single = frames_to_atom14_positions(
                torsion_angles_to_frames(backbone[i, j], angles[i, j], aatype[i, j]), aatype[i, j]
            )
            torch.testing.assert_close(atom14[i, j], single, atol=1e-6, rtol=0)


def test_chain_reproduces_its_torsions(chain):
    """psi and chi recovered from the built chain equal those it was built with; the trace's
    omega and phi come back approximately (ideal residue geometry differs slightly)."""
    out = atom37_to_torsion_angles(
        chain["aatype"], chain["all_atom_positions"], chain["all_atom_mask"]
    )
    angle = torch.atan2(
        out["torsion_angles_sin_cos"][..., 0], out["torsion_angles_sin_cos"][..., 1]
    )
    err = _wrap(angle - chain["torsions"]).abs() * out["torsion_angles_mask"]
    assert err[:, 2:].max() < 1e-6
    assert err[:, :2].max() < 0.2
    # Masks: no pre-omega/phi for the first residue; chi masks follow the residue type.
    assert out["torsion_angles_mask"][0, :2].tolist() == [0.0, 0.0]
    expected_chi = torch.tensor(rc.restype_chi_angles_mask, dtype=torch.float64)[chain["aatype"]]
    torch.testing.assert_close(out["torsion_angles_mask"][:, 3:], expected_chi)
    # Bonds between residues are peptide-like.
    pos = chain["all_atom_positions"]
    keep = (chain["aatype"][1:] != 20) & (chain["aatype"][:-1] != 20)
    c_n = (pos[1:, 0] - pos[:-1, 2]).norm(dim=-1)[keep]
    assert ((c_n > 1.30) & (c_n < 1.36)).all()


# ---------------------------------------------------------------------------------------
# Ground truth from atom37 coordinates.
# ---------------------------------------------------------------------------------------


def _check_torsions(all_atom, aatype, pos, mask, placeholder):
    ours = atom37_to_torsion_angles(aatype, pos, mask, placeholder_for_undefined=placeholder)
    theirs = all_atom.atom37_to_torsion_angles(
        aatype.numpy(), pos.numpy(), mask.numpy(), placeholder
    )
    for key in ("torsion_angles_sin_cos", "alt_torsion_angles_sin_cos", "torsion_angles_mask"):
        assert ours[key].shape == theirs[key].shape
        np.testing.assert_allclose(
            ours[key].numpy(), np.asarray(theirs[key]), atol=1e-5, rtol=0, err_msg=key
        )


def _check_frames(all_atom, aatype, pos, mask):
    ours = atom37_to_frames(aatype, pos, mask)
    theirs = all_atom.atom37_to_frames(aatype.numpy(), pos.numpy(), mask.numpy())
    for key in ("rigidgroups_gt_frames", "rigidgroups_alt_gt_frames"):
        ref = _flat12_to_4x4(theirs[key])
        np.testing.assert_allclose(
            ours[key][..., :3, :3].numpy(), ref[..., :3, :3], atol=ATOL, rtol=0
        )
        np.testing.assert_allclose(ours[key].numpy(), ref, atol=ATOL_POS, rtol=0, err_msg=key)
    for key in (
        "rigidgroups_gt_exists",
        "rigidgroups_group_exists",
        "rigidgroups_group_is_ambiguous",
    ):
        np.testing.assert_array_equal(ours[key].numpy(), np.asarray(theirs[key]), err_msg=key)
    return ours


def _check_atom14(all_atom, aatype, pos, mask):
    ours = make_atom14_positions(aatype, pos, mask)
    for b in range(aatype.shape[0]):
        batch = {k: v.numpy() for k, v in make_atom14_masks(aatype[b]).items()}
        gt = np.asarray(all_atom.atom37_to_atom14(pos[b].numpy(), batch))
        gt_exists = np.asarray(all_atom.atom37_to_atom14(mask[b].numpy(), batch))
        np.testing.assert_array_equal(ours["atom14_gt_positions"][b].numpy(), gt)
        np.testing.assert_array_equal(ours["atom14_gt_exists"][b].numpy(), gt_exists)
        # AlphaFold's get_alt_atom14 no longer runs on r3.Vecs; apply its renaming matrices
        # the way the reference data transform does.
        renaming = all_atom.RENAMING_MATRICES[aatype[b].numpy()]
        alt = np.einsum("rac,rab->rbc", gt, renaming)
        alt_exists = np.einsum("ra,rab->rb", gt_exists, renaming)
        np.testing.assert_array_equal(ours["atom14_alt_gt_positions"][b].numpy(), alt)
        np.testing.assert_array_equal(
            ours["atom14_alt_gt_exists"][b].numpy(), np.asarray(alt_exists)
        )
    np.testing.assert_array_equal(
        ours["atom14_atom_is_ambiguous"].numpy(), rc.restype_atom14_ambiguous_atoms[aatype.numpy()]
    )


@pytest.mark.oracle
def test_ground_truth_matches_alphafold_on_masked_chains(af, chain_batch):
    all_atom, _ = af
    aatype, pos, mask = (
        chain_batch["aatype"],
        chain_batch["all_atom_positions"],
        chain_batch["all_atom_mask"],
    )
    assert mask.sum() < make_atom14_masks(aatype)["atom37_atom_exists"].sum()  # some atoms missing
    for placeholder in (False, True):
        _check_torsions(all_atom, aatype, pos, mask, placeholder)
    _check_frames(all_atom, aatype, pos, mask)
    _check_atom14(all_atom, aatype, pos, mask)


@pytest.mark.oracle
def test_ground_truth_matches_alphafold_on_real_structure(af, bpti):
    all_atom, _ = af
    aatype, pos, mask = (bpti[k][None] for k in ("aatype", "all_atom_positions", "all_atom_mask"))
    assert aatype.shape[1] == 58
    _check_torsions(all_atom, aatype, pos, mask, False)
    _check_frames(all_atom, aatype, pos, mask)
    _check_atom14(all_atom, aatype, pos, mask)


@pytest.mark.oracle
def test_pseudo_beta_matches_alphafold(af, chain_batch):
    from alphafold.model import modules

    aatype, pos, mask = (
        chain_batch["aatype"],
        chain_batch["all_atom_positions"],
        chain_batch["all_atom_mask"],
    )
    ours, ours_mask = pseudo_beta(aatype, pos, mask)
    theirs, theirs_mask = modules.pseudo_beta_fn(aatype.numpy(), pos.numpy(), mask.numpy())
    np.testing.assert_array_equal(ours.numpy(), np.asarray(theirs))
    np.testing.assert_array_equal(ours_mask.numpy(), np.asarray(theirs_mask))
    assert pseudo_beta(aatype, pos)[1] is None


def test_real_structure_rebuilds_from_its_frames_and_torsions(bpti):
    """Ideal residues placed by the structure's own backbone frames and torsions land near
    the crystal atoms. Real bond lengths and angles scatter around the ideal ones, so the
    error grows along the side chain (~0.1 A for the backbone, up to ~2 A at arginine's
    NH2); a wrong torsion convention would misplace every side chain by several A."""
    aatype, pos, mask = (
        bpti["aatype"],
        bpti["all_atom_positions"].double(),
        bpti["all_atom_mask"].double(),
    )
    feats = ground_truth_features(aatype, pos, mask)
    backbone = Rigid.from_tensor_4x4(feats["backbone_rigid_tensor"])
    torsions = atom37_to_torsion_angles(aatype, pos, mask)["torsion_angles_sin_cos"]
    atom14 = frames_to_atom14_positions(
        torsion_angles_to_frames(backbone, torsions, aatype), aatype
    )
    exists = feats["atom14_gt_exists"] * feats["backbone_rigid_mask"][:, None]
    dev = (atom14 - feats["atom14_gt_positions"]).norm(dim=-1)

    def rmsd(slots):
        return torch.sqrt((dev[:, slots] ** 2 * exists[:, slots]).sum() / exists[:, slots].sum())

    assert rmsd(slice(0, 5)) < 0.15  # N, CA, C, O, CB
    assert rmsd(slice(5, 6)) < 0.4  # first side-chain atom past CB
    assert rmsd(slice(0, 14)) < 0.45
    assert (dev * exists).max() < 2.0
    # The backbone and psi frames come back exactly; side-chain frames inherit the ideal
    # CA-CB direction and so differ from the crystal's by a few degrees.
    rebuilt = torsion_angles_to_frames(backbone, torsions, aatype).to_tensor_4x4()
    both = feats["rigidgroups_gt_exists"][..., None, None]
    for g in (0, 3):
        torch.testing.assert_close(
            (rebuilt * both)[:, g, :3, :3],
            (feats["rigidgroups_gt_frames"] * both)[:, g, :3, :3],
            atol=1e-6,
            rtol=0,
        )


def test_ground_truth_features_contract(chain_batch):
    aatype, pos, mask = (
        chain_batch["aatype"],
        chain_batch["all_atom_positions"],
        chain_batch["all_atom_mask"],
    )
    feats = ground_truth_features(aatype, pos, mask)
    b, n = aatype.shape
    expected = {
        "atom14_gt_positions": (b, n, 14, 3),
        "atom14_alt_gt_positions": (b, n, 14, 3),
        "atom14_gt_exists": (b, n, 14),
        "atom14_alt_gt_exists": (b, n, 14),
        "atom14_atom_is_ambiguous": (b, n, 14),
        "atom14_atom_exists": (b, n, 14),
        "residx_atom14_to_atom37": (b, n, 14),
        "residx_atom37_to_atom14": (b, n, 37),
        "atom37_atom_exists": (b, n, 37),
        "rigidgroups_gt_frames": (b, n, 8, 4, 4),
        "rigidgroups_alt_gt_frames": (b, n, 8, 4, 4),
        "rigidgroups_gt_exists": (b, n, 8),
        "rigidgroups_group_exists": (b, n, 8),
        "rigidgroups_group_is_ambiguous": (b, n, 8),
        "backbone_rigid_tensor": (b, n, 4, 4),
        "backbone_rigid_mask": (b, n),
        "chi_angles_sin_cos": (b, n, 4, 2),
        "chi_mask": (b, n, 4),
        "pseudo_beta": (b, n, 3),
        "pseudo_beta_mask": (b, n),
    }
    assert {k: tuple(v.shape) for k, v in feats.items()} == expected
    for key in ("residx_atom14_to_atom37", "residx_atom37_to_atom14"):
        assert feats[key].dtype == torch.long
    for key, value in feats.items():
        if value.is_floating_point():
            assert value.dtype == torch.float32, key
    bb = backbone_frames(aatype, pos, mask)
    torch.testing.assert_close(
        bb["backbone_rigid_tensor"], feats["backbone_rigid_tensor"], atol=0, rtol=0
    )
    torch.testing.assert_close(
        bb["backbone_rigid_mask"], feats["backbone_rigid_mask"], atol=0, rtol=0
    )
    sliced = get_backbone_frames(feats["rigidgroups_gt_frames"], feats["rigidgroups_gt_exists"])
    torch.testing.assert_close(sliced["backbone_rigid_tensor"], bb["backbone_rigid_tensor"])
    chi = get_chi_angles(aatype, pos, mask)
    torch.testing.assert_close(chi["chi_angles_sin_cos"], feats["chi_angles_sin_cos"])


# ---------------------------------------------------------------------------------------
# Gradients and shape-static execution.
# ---------------------------------------------------------------------------------------


def test_gradcheck_torsions_to_atom14():
    gen = torch.Generator().manual_seed(3)
    aatype = torch.tensor([1, 13, 17])  # ARG (4 chained chi), PHE, TRP
    frame = random_rigid(gen, (3,), scale=3.0, dtype=torch.float64)
    rot = frame.rot.clone().requires_grad_(True)
    trans = frame.trans.clone().requires_grad_(True)
    angles = random_sin_cos(gen, (3, 7), dtype=torch.float64).requires_grad_(True)

    def fn(rot, trans, angles):
        frames = torsion_angles_to_frames(Rigid(rot, trans), angles, aatype)
        return frames_to_atom14_positions(frames, aatype)

    assert torch.autograd.gradcheck(fn, (rot, trans, angles), eps=1e-6, atol=1e-5)


def test_gradients_finite_with_missing_atoms(chain_batch):
    aatype, mask = chain_batch["aatype"], chain_batch["all_atom_mask"]
    pos = chain_batch["all_atom_positions"].clone().requires_grad_(True)
    torsions = atom37_to_torsion_angles(aatype, pos, mask, placeholder_for_undefined=True)
    frames = atom37_to_frames(aatype, pos, mask)
    loss = torsions["torsion_angles_sin_cos"].sum() + frames["rigidgroups_gt_frames"].sum()
    loss = loss + make_atom14_positions(aatype, pos, mask)["atom14_alt_gt_positions"].sum()
    loss.backward()
    assert torch.isfinite(pos.grad).all()


def test_float64_in_float64_out(chain):
    out = atom37_to_torsion_angles(
        chain["aatype"], chain["all_atom_positions"], chain["all_atom_mask"]
    )
    assert out["torsion_angles_sin_cos"].dtype == torch.float64
    assert (
        atom37_to_frames(chain["aatype"], chain["all_atom_positions"], chain["all_atom_mask"])[
            "rigidgroups_gt_frames"
        ].dtype
        == torch.float64
    )


def test_runs_on_meta_tensors():
    """Meta tensors carry no data: any host read (.item(), boolean masking, data-dependent
    shapes) would fail here, so this guards CUDA-graph capturability."""
    meta = torch.device("meta")
    aatype = torch.zeros(2, 5, dtype=torch.long, device=meta)
    backbone = Rigid(torch.zeros(2, 5, 3, 3, device=meta), torch.zeros(2, 5, 3, device=meta))
    frames = torsion_angles_to_frames(backbone, torch.zeros(2, 5, 7, 2, device=meta), aatype)
    atom14 = frames_to_atom14_positions(frames, aatype)
    masks = make_atom14_masks(aatype)
    atom37 = atom14_to_atom37(atom14, masks["residx_atom37_to_atom14"], masks["atom37_atom_exists"])
    feats = ground_truth_features(aatype, atom37, masks["atom37_atom_exists"])
    torsions = atom37_to_torsion_angles(aatype, atom37, masks["atom37_atom_exists"], True)
    assert atom37.shape == (2, 5, 37, 3) and feats["rigidgroups_gt_frames"].shape == (2, 5, 8, 4, 4)
    assert torsions["torsion_angles_sin_cos"].shape == (2, 5, 7, 2)


def test_compiles_as_one_graph():
    """fullgraph=True fails on any graph break (host reads, data-dependent shapes)."""
    gen = torch.Generator().manual_seed(5)
    aatype = torch.randint(0, 21, (2, 6), generator=gen)
    backbone = random_rigid(gen, (2, 6))
    angles = random_sin_cos(gen, (2, 6, 7))

    def fn(rot, trans, angles, aatype):
        frames = torsion_angles_to_frames(Rigid(rot, trans), angles, aatype)
        atom14 = frames_to_atom14_positions(frames, aatype)
        masks = make_atom14_masks(aatype)
        atom37 = atom14_to_atom37(
            atom14, masks["residx_atom37_to_atom14"], masks["atom37_atom_exists"]
        )
        gt = atom37_to_frames(aatype, atom37, masks["atom37_atom_exists"])["rigidgroups_gt_frames"]
        return atom14, gt

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    args = (backbone.rot, backbone.trans, angles, aatype)
    for ours, ref in zip(compiled(*args), fn(*args)):
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_capture_matches_eager():
    device = torch.device("cuda")
    gen = torch.Generator().manual_seed(4)
    aatype = torch.randint(0, 21, (2, 32), generator=gen).to(device)
    backbone = random_rigid(gen, (2, 32)).to(device=device)
    angles = random_sin_cos(gen, (2, 32, 7)).to(device)
    masks = make_atom14_masks(aatype)

    quat = torch.nn.functional.normalize(torch.randn(2, 32, 4, generator=gen), dim=-1).to(device)
    update = (0.1 * torch.randn(2, 32, 6, generator=gen)).to(device)

    def step():
        # Structure-module style backbone update, then the all-atom path.
        new_quat, new_trans = quat_backbone_update(quat, backbone.trans, update)
        moved = rigid_from_quat(new_quat, new_trans).stop_rot_gradient().scale_translation(10.0)
        ref = Rigid.make_transform_from_reference(moved.trans, backbone.trans, 2 * moved.trans)
        unit = ref.unsqueeze(-1).invert_apply(moved.trans[..., None, :, :])  # [2, 32, 32, 3]
        frames = torsion_angles_to_frames(backbone, angles, aatype)
        atom14 = frames_to_atom14_positions(frames, aatype)
        atom37 = atom14_to_atom37(
            atom14, masks["residx_atom37_to_atom14"], masks["atom37_atom_exists"]
        )
        feats = ground_truth_features(aatype, atom37, masks["atom37_atom_exists"])
        return atom14, feats["rigidgroups_gt_frames"], feats["chi_angles_sin_cos"], unit

    eager = step()  # warm-up also fills the device table cache
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        captured = step()
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(eager, captured):
        torch.testing.assert_close(a, b)
