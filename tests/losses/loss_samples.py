"""Test helper: synthetic but coherent (outputs, batch) pairs built from real chains."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from scalefold.geometry import all_atom
from scalefold.geometry import residue_constants as rc
from scalefold.geometry.rigid import Rigid

# --------------------------------------------------------------------------------------
# Synthetic but physically coherent (outputs, batch) pairs built from a real chain: the
# "prediction" is the true structure with per-layer backbone noise and perturbed torsion
# angles, run through the same frames -> atoms geometry the structure module uses.
# --------------------------------------------------------------------------------------


def _random_rotations(shape, angle_scale, gen) -> torch.Tensor:
    axis = torch.randn(*shape, 3, generator=gen, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = angle_scale * torch.randn(*shape, 1, generator=gen, dtype=torch.float64)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack(
        [
            torch.stack([zero, -z, y], -1),
            torch.stack([z, zero, -x], -1),
            torch.stack([-y, x, zero], -1),
        ],
        -2,
    )
    eye = torch.eye(3, dtype=torch.float64).expand(k.shape)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return eye + s * k + (1 - c) * (k @ k)  # Rodrigues


def make_sample(
    chain,
    start: int,
    n_res: int,
    pad_to: int | None = None,
    num_layers: int = 8,
    n_clust: int = 6,
    seed: int = 0,
    noise: float = 3.0,
    resolution: float = 2.0,
) -> tuple[dict, dict]:
    """One sample (no batch dim), float64, padded with zeros to `pad_to` residues.

    Residue axes are recognised by their length, so n_res must differ from every other
    axis length used here.
    """
    assert n_res not in (2, 3, 4, 7, 8, 14, 23, 37, 50, 64, num_layers, n_clust)
    gen = torch.Generator().manual_seed(seed)
    sl = slice(start, start + n_res)
    aatype = torch.from_numpy(chain.aatype[sl].copy())
    pos = torch.from_numpy(chain.all_atom_positions[sl].copy())
    mask = torch.from_numpy(chain.all_atom_mask[sl].copy())
    feats = all_atom.ground_truth_features(aatype, pos, mask)
    torsions = all_atom.atom37_to_torsion_angles(aatype, pos, mask)["torsion_angles_sin_cos"]

    gt_bb = Rigid.from_tensor_4x4(feats["backbone_rigid_tensor"])
    glob_rot = _random_rotations((), math.pi, gen)
    glob_trans = 30.0 * torch.randn(3, generator=gen, dtype=torch.float64)
    frames, sc_frames, positions, angles, unnorm = [], [], [], [], []
    for layer in range(num_layers):
        scale = noise * (num_layers - layer) / num_layers + 0.2
        rot = _random_rotations((n_res,), 0.1 * scale, gen) @ gt_bb.rot
        trans = gt_bb.trans + scale * torch.randn(n_res, 3, generator=gen, dtype=torch.float64)
        bb = Rigid(glob_rot @ rot, trans @ glob_rot.T + glob_trans)
        raw = torsions * (0.6 + 0.8 * torch.rand(n_res, 7, 1, generator=gen, dtype=torch.float64))
        raw = raw + 0.3 * torch.randn(n_res, 7, 2, generator=gen, dtype=torch.float64)
        norm = raw / torch.sqrt(torch.sum(raw**2, dim=-1, keepdim=True))
        groups = all_atom.torsion_angles_to_frames(bb, norm, aatype)
        frames.append(bb.to_tensor_4x4())
        sc_frames.append(groups.to_tensor_4x4())
        positions.append(all_atom.frames_to_atom14_positions(groups, aatype))
        angles.append(norm)
        unnorm.append(raw)
    final37 = all_atom.atom14_to_atom37(
        positions[-1], feats["residx_atom37_to_atom14"], feats["atom37_atom_exists"]
    )
    outputs = {
        "sm_frames": torch.stack(frames),
        "sm_sidechain_frames": torch.stack(sc_frames),
        "sm_positions": torch.stack(positions),
        "sm_angles": torch.stack(angles),
        "sm_unnormalized_angles": torch.stack(unnorm),
        "final_atom_positions": final37,
        "final_atom_mask": feats["atom37_atom_exists"],
        "final_affine_tensor": frames[-1],
        "distogram_logits": 2 * torch.randn(n_res, n_res, 64, generator=gen, dtype=torch.float64),
        "masked_msa_logits": 2
        * torch.randn(n_clust, n_res, 23, generator=gen, dtype=torch.float64),
        "lddt_logits": 2 * torch.randn(n_res, 50, generator=gen, dtype=torch.float64),
        "experimentally_resolved_logits": 2
        * torch.randn(n_res, 37, generator=gen, dtype=torch.float64),
        "tm_logits": 2 * torch.randn(n_res, n_res, 64, generator=gen, dtype=torch.float64),
    }
    batch = dict(feats)
    batch.update(
        aatype=aatype,
        residue_index=torch.from_numpy(chain.residue_index[sl].copy()),
        seq_mask=torch.ones(n_res, dtype=torch.float64),
        all_atom_positions=pos,
        all_atom_mask=mask,
        true_msa=torch.randint(0, 22, (n_clust, n_res), generator=gen),
        bert_mask=(torch.rand(n_clust, n_res, generator=gen) < 0.15).to(torch.float64),
        resolution=torch.tensor(resolution, dtype=torch.float64),
        seq_length=torch.tensor(n_res),
    )
    if pad_to is not None and pad_to > n_res:
        outputs = {k: _pad_residues(k, v, n_res, pad_to) for k, v in outputs.items()}
        batch = {k: _pad_residues(k, v, n_res, pad_to) for k, v in batch.items()}
    return outputs, batch


def _pad_residues(key: str, value: torch.Tensor, n_res: int, pad_to: int) -> torch.Tensor:
    # Every residue axis of these tensors has length n_res; scalars have none.
    if value.dim() == 0:
        return value
    for dim in range(value.dim()):
        if value.shape[dim] == n_res and not (key.startswith("sm_") and dim == 0):
            pad = [0, 0] * (value.dim() - dim - 1) + [0, pad_to - n_res]
            value = torch.nn.functional.pad(value, pad)
    return value


def collate(samples: list[tuple[dict, dict]], dtype: torch.dtype = torch.float32):
    def stack(dicts):
        out = {}
        for key in dicts[0]:
            t = torch.stack([d[key] for d in dicts])
            out[key] = t.to(dtype) if t.is_floating_point() else t
        return out

    return stack([s[0] for s in samples]), stack([s[1] for s in samples])


def to_numpy(d: dict, index: int = 0) -> dict:
    return {k: np.asarray(v[index].detach().numpy()) for k, v in d.items()}


@dataclass(frozen=True)
class SyntheticChain:
    """A chain-shaped stand-in for tests that must run without the structure files."""

    aatype: np.ndarray
    residue_index: np.ndarray
    all_atom_positions: np.ndarray
    all_atom_mask: np.ndarray


def synthetic_chain(n_res: int, seed: int = 0) -> SyntheticChain:
    """Random residue types on a random 3.8 Å Cα walk, other atoms scattered around Cα."""
    rng = np.random.default_rng(seed)
    aatype = rng.integers(0, 20, n_res)
    steps = rng.standard_normal((n_res, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=-1, keepdims=True)
    ca = np.cumsum(steps, axis=0)
    positions = ca[:, None, :] + 1.5 * rng.standard_normal((n_res, 37, 3))
    positions[:, 1] = ca
    mask = np.asarray(rc.STANDARD_ATOM_MASK, dtype=np.float64)[aatype]
    return SyntheticChain(aatype, np.arange(n_res), positions * mask[..., None], mask)
