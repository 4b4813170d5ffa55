"""Synthetic feature batches of any shape, for benchmarks and smoke runs.

`synthetic_batch` produces every feature of docs/CONTRACTS.md (model input and the ground
truth the loss reads) without touching a database: a random sequence, an MSA of mutated
copies with cluster profiles and BERT masking, an extra MSA, templates, and atom
coordinates that satisfy the ideal residue geometry.

Coordinates: backbone frames follow a persistent random walk (Cα steps of 3.8 Å, frames
rotated a little from one residue to the next), side chains are placed from those frames
and random torsions by the model's own `torsion_angles_to_frames` /
`frames_to_atom14_positions`, and every ground-truth feature is derived from the atom37
coordinates by `scalefold.geometry.all_atom.ground_truth_features`. The chain is
plausible (bond lengths and angles inside residues are ideal), not physical (residues
may clash): enough for timing a training step and for a loss with finite gradients.

All recycling slices carry the same features (the real loader re-samples the MSA per
slice; a benchmark does not care). Nothing here is used by training itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scalefold.geometry.all_atom import (
    atom14_to_atom37,
    atom37_to_torsion_angles,
    frames_to_atom14_positions,
    ground_truth_features,
    make_atom14_masks,
    pseudo_beta,
    torsion_angles_to_frames,
)
from scalefold.geometry.rigid import Rigid, quat_to_rot

GAP = 21  # HHblits alphabet: 20 amino acids, X (20), gap (21); 22 = BERT mask token
MASK_TOKEN = 22
CA_STEP = 3.8  # Angstrom between consecutive Cα atoms


@dataclass(frozen=True)
class SyntheticShape:
    """The sizes of one synthetic example (the benchmark's: 256, 124, 1024, 4)."""

    n_res: int = 256
    n_clust: int = 124
    n_extra: int = 1024
    n_templ: int = 4
    num_iterations: int = 1  # recycling slices R = recycling iterations + 1


def _random_unit_quat(n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    q = torch.randn(n, 4, generator=gen, dtype=dtype)
    return q / q.norm(dim=-1, keepdim=True)


def _small_rotation_quat(n: int, gen: torch.Generator, angle: float, dtype) -> torch.Tensor:
    # Rotation by about `angle` radians around a random axis, w-first quaternion.
    axis = torch.randn(n, 3, generator=gen, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    half = 0.5 * angle * (0.5 + torch.rand(n, 1, generator=gen, dtype=dtype))
    return torch.cat([torch.cos(half), torch.sin(half) * axis], dim=-1)


def _quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def random_structure(
    aatype: torch.Tensor, gen: torch.Generator, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Atom37 positions [N, 37, 3] and mask [N, 37] of a random chain with ideal residues."""
    n = aatype.shape[0]
    # Each frame is the previous one turned by ~40 degrees: a persistent, compact walk.
    steps = _small_rotation_quat(n, gen, math.radians(40.0), dtype)
    quats = [_random_unit_quat(1, gen, dtype)[0]]
    for i in range(1, n):
        quats.append(_quat_mul(quats[-1], steps[i]))
    quat = torch.stack(quats)  # [N, 4]
    rot = quat_to_rot(quat)  # [N, 3, 3]
    # Advance along each frame's x axis (Cα -> C direction) by one Cα-Cα step.
    trans = torch.cumsum(CA_STEP * rot[:, :, 0], dim=0)  # [N, 3]
    angles = torch.rand(n, 7, generator=gen, dtype=dtype) * 2 * math.pi
    sin_cos = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1)  # [N, 7, 2]
    frames = torsion_angles_to_frames(Rigid(rot, trans), sin_cos, aatype)
    atom14 = frames_to_atom14_positions(frames, aatype)  # [N, 14, 3]
    masks = make_atom14_masks(aatype)
    atom37 = atom14_to_atom37(atom14, masks["residx_atom37_to_atom14"],
                              masks["atom37_atom_exists"])  # [N, 37, 3]
    return atom37, masks["atom37_atom_exists"].to(dtype)


def _mutate(rows: torch.Tensor, rate: float, gap_rate: float, gen) -> torch.Tensor:
    # rows: [S, N] residue indices; substitutions and gaps at the given per-site rates.
    out = rows.clone()
    sub = torch.rand(rows.shape, generator=gen) < rate
    out[sub] = torch.randint(0, 20, (int(sub.sum()),), generator=gen)
    gap = torch.rand(rows.shape, generator=gen) < gap_rate
    out[gap] = GAP
    return out


def _deletion_transform(count: torch.Tensor) -> torch.Tensor:
    return 2.0 / math.pi * torch.atan(count / 3.0)


def synthetic_features(shape: SyntheticShape, seed: int = 0) -> dict[str, torch.Tensor]:
    """One example's features without batch and recycling dims, on the CPU (float32)."""
    gen = torch.Generator().manual_seed(seed)
    n, s, e, t = shape.n_res, shape.n_clust, shape.n_extra, shape.n_templ
    aatype = torch.randint(0, 20, (n,), generator=gen)
    f: dict[str, torch.Tensor] = {"aatype": aatype}
    f["target_feat"] = torch.cat([torch.zeros(n, 1), F.one_hot(aatype, 21).float()], dim=-1)
    f["residue_index"] = torch.arange(n)
    f["seq_mask"] = torch.ones(n)

    # Clustered MSA: mutated copies of the query, BERT-masked, with cluster profiles.
    msa = _mutate(aatype.expand(s, n), 0.3, 0.05, gen)
    msa[0] = aatype
    deletions = torch.where(torch.rand(s, n, generator=gen) < 0.05,
                            torch.randint(1, 8, (s, n), generator=gen).float(), 0.0)
    profile = torch.softmax(3.0 * torch.randn(s, n, 23, generator=gen), dim=-1)
    bert = (torch.rand(s, n, generator=gen) < 0.15).float()
    masked = torch.where(bert.bool(), MASK_TOKEN, msa)
    f["msa_feat"] = torch.cat(
        [
            F.one_hot(masked, 23).float(),  # [S, N, 23]
            (deletions > 0).float()[..., None],
            _deletion_transform(deletions)[..., None],
            profile,  # [S, N, 23]
            _deletion_transform(deletions * 0.5)[..., None],
        ],
        dim=-1,
    )  # [S, N, 49]
    f["msa_mask"] = torch.ones(s, n)
    f["true_msa"] = msa
    f["bert_mask"] = bert

    extra = _mutate(aatype.expand(e, n), 0.45, 0.1, gen)
    extra_del = torch.where(torch.rand(e, n, generator=gen) < 0.05,
                            torch.randint(1, 8, (e, n), generator=gen).float(), 0.0)
    f["extra_msa"] = extra
    f["extra_has_deletion"] = (extra_del > 0).float()
    f["extra_deletion_value"] = _deletion_transform(extra_del)
    f["extra_msa_mask"] = torch.ones(e, n)

    # Ground truth from coordinates (float64 for robust chi angles, as the geometry
    # module recommends), then float32 like the reference's loader.
    pos, mask = random_structure(aatype, gen)
    gt = ground_truth_features(aatype, pos, mask)
    f["all_atom_positions"] = pos.float()
    f["all_atom_mask"] = mask.float()
    for k, v in gt.items():
        f[k] = v.float() if v.is_floating_point() else v
    f.update(make_atom14_masks(aatype))

    # Templates: homologous sequences with their own random structures.
    t_aatype = _mutate(aatype.expand(t, n), 0.3, 0.0, gen)
    t_pos, t_mask = [], []
    for i in range(t):
        p, m = random_structure(t_aatype[i], gen)
        t_pos.append(p)
        t_mask.append(m)
    t_pos_t = torch.stack(t_pos) if t else torch.zeros(0, n, 37, 3, dtype=torch.float64)
    t_mask_t = torch.stack(t_mask) if t else torch.zeros(0, n, 37, dtype=torch.float64)
    tors = atom37_to_torsion_angles(t_aatype, t_pos_t, t_mask_t)
    pb, pb_mask = pseudo_beta(t_aatype, t_pos_t, t_mask_t)
    f["template_aatype"] = t_aatype
    f["template_all_atom_positions"] = t_pos_t.float()
    f["template_all_atom_mask"] = t_mask_t.float()
    f["template_mask"] = torch.ones(t)
    f["template_pseudo_beta"] = pb.float()
    f["template_pseudo_beta_mask"] = pb_mask.float()
    f["template_torsion_angles_sin_cos"] = tors["torsion_angles_sin_cos"].float()
    f["template_alt_torsion_angles_sin_cos"] = tors["alt_torsion_angles_sin_cos"].float()
    f["template_torsion_angles_mask"] = tors["torsion_angles_mask"].float()

    f["resolution"] = torch.tensor(2.0)
    f["seq_length"] = torch.tensor(n)
    f["is_distillation"] = torch.tensor(0.0)
    return f


def synthetic_batch(
    cfg: object | None = None,
    n_res: int = 256,
    n_clust: int = 124,
    n_extra: int = 1024,
    n_templ: int = 4,
    num_iterations: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """A model-input batch [1, ..., R] (docs/CONTRACTS.md), ground truth included.

    `cfg` (an `AlphaFoldConfig`) is accepted for symmetry with the model builder; the
    features do not depend on the network's widths. `num_iterations` is the number of
    recycling slices R (recycling iterations + 1). Every tensor gets a leading batch dim
    of 1 and a trailing recycling dim of size R (the same data in every slice).
    """
    del cfg
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    feats = synthetic_features(SyntheticShape(n_res, n_clust, n_extra, n_templ, num_iterations),
                               seed)
    r = num_iterations
    return {
        k: v.unsqueeze(0).unsqueeze(-1).expand(*((1,) + v.shape + (r,))).contiguous().to(device)
        for k, v in feats.items()
    }

