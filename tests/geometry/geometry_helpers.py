"""Input builders for the geometry tests: random rigid frames and angles, and a protein-like
chain built from ideal residue geometry."""

from __future__ import annotations

import numpy as np
import torch

from scalefold.geometry.all_atom import (
    atom14_to_atom37,
    frames_to_atom14_positions,
    make_atom14_masks,
    torsion_angles_to_frames,
)
from scalefold.geometry.rigid import Rigid, quat_to_rot


def random_rigid(gen: torch.Generator, shape, scale: float = 10.0, dtype=torch.float32) -> Rigid:
    quat = torch.randn(*shape, 4, generator=gen, dtype=torch.float64)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    trans = scale * torch.randn(*shape, 3, generator=gen, dtype=torch.float64)
    return Rigid(quat_to_rot(quat), trans).to(dtype)


def random_sin_cos(gen: torch.Generator, shape, dtype=torch.float32) -> torch.Tensor:
    angle = (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi
    return torch.stack((torch.sin(angle), torch.cos(angle)), dim=-1).to(dtype)


def _place(a, b, c, bond, angle, torsion):
    """Fourth atom d with |cd| = bond, angle(b, c, d) = angle, dihedral(a, b, c, d) = torsion."""
    bc = (c - b) / np.linalg.norm(c - b)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    basis = np.stack((bc, np.cross(normal, bc), normal), axis=1)
    local = bond * np.array(
        [-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)]
    )
    return c + basis @ local


def build_chain(aatype: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
    """A connected chain with ideal residue geometry (float64 tensors).

    The backbone N/CA/C trace is grown with standard bond lengths/angles and helix- or
    strand-like (phi, psi, omega); every residue's atoms are then placed by
    torsion_angles_to_frames from its backbone frame, its psi and random chi angles.
    Returns aatype [N], all_atom_positions [N, 37, 3], all_atom_mask [N, 37] and the
    torsion angles used (torsions [N, 7] radians; entries 0 and 1 are the trace's omega
    and phi, which the literature geometry reproduces only approximately).
    """
    rng = np.random.default_rng(seed)
    n = len(aatype)
    deg = np.pi / 180
    helix = rng.random(n) < 0.5
    phi = np.where(helix, -63.0, -120.0) * deg + rng.normal(0, 10 * deg, n)
    psi = np.where(helix, -43.0, 130.0) * deg + rng.normal(0, 10 * deg, n)
    omega = np.pi + rng.normal(0, 4 * deg, n)

    backbone = np.zeros((n, 3, 3))  # N, CA, C
    backbone[0] = [[-0.525, 1.363, 0.0], [0.0, 0.0, 0.0], [1.526, 0.0, 0.0]]
    for i in range(1, n):
        n_prev, ca_prev, c_prev = backbone[i - 1]
        n_i = _place(n_prev, ca_prev, c_prev, 1.329, 116.2 * deg, psi[i - 1])
        ca_i = _place(ca_prev, c_prev, n_i, 1.458, 121.7 * deg, omega[i])
        c_i = _place(c_prev, n_i, ca_i, 1.525, 111.2 * deg, phi[i])
        backbone[i] = [n_i, ca_i, c_i]
    bb = torch.from_numpy(backbone)
    frame = Rigid.from_3_points(bb[:, 2], bb[:, 1], bb[:, 0])
    frame = Rigid(frame.rot * torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64), frame.trans)

    rotamers = np.array([-60.0, 180.0, 60.0]) * deg
    chis = rng.choice(rotamers, size=(n, 4)) + rng.normal(0, 12 * deg, (n, 4))
    torsions = np.concatenate((omega[:, None], phi[:, None], psi[:, None], chis), axis=1)
    sin_cos = torch.from_numpy(np.stack((np.sin(torsions), np.cos(torsions)), axis=-1))

    aatype_t = torch.from_numpy(np.asarray(aatype, dtype=np.int64))
    frames = torsion_angles_to_frames(frame, sin_cos, aatype_t)
    atom14 = frames_to_atom14_positions(frames, aatype_t)
    masks = make_atom14_masks(aatype_t)
    atom37 = atom14_to_atom37(atom14, masks["residx_atom37_to_atom14"], masks["atom37_atom_exists"])
    return {
        "aatype": aatype_t,
        "all_atom_positions": atom37,
        "all_atom_mask": masks["atom37_atom_exists"].double(),
        "torsions": torch.from_numpy(torsions),
    }
