"""Random but realistic feature batches in the project's contract (docs/CONTRACTS.md).

`random_alphafold_features` builds what the reference's loader would produce for a small
protein: a valid sequence, a clustered MSA with BERT masking, an extra MSA, templates with
real atom37 coordinates (ideal residue geometry on a backbone grown from random phi/psi),
template torsion features, atom14/atom37 index maps and basic ground truth. Every tensor
has a leading batch dimension of 1 and a trailing recycling dimension; MSA-derived
features are re-drawn per recycling iteration, as the reference's loader re-samples them.

Template torsion features come from AlphaFold's own function by default. Where a torsion
is undefined (the pre-omega of the first residue or of one after a gap, whose atoms are
zero) AlphaFold still emits a value, built from a degenerate frame (float rounding noise),
and feeds it to its template angle embedder unmasked; a parity test therefore needs the
features from that same function, not from another implementation.

Residue constants come from AlphaFold's ``alphafold.common.residue_constants`` (numpy and
dm-tree only), else from ``scalefold.geometry.residue_constants`` with the same names.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

GAP = 21  # HHblits alphabet: 20 amino acids, X (20), gap (21); 22 = BERT mask token
MASK_TOKEN = 22
GLY = 7  # index of 'G' in ARNDCQEGHILKMFPSTWYV

# Ideal backbone geometry (Engh & Huber), Angstrom / degrees.
_N_CA, _CA_C, _C_N = 1.458, 1.525, 1.329
_ANGLE_N_CA_C, _ANGLE_CA_C_N, _ANGLE_C_N_CA = 111.2, 116.2, 121.7

TorsionFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


@functools.lru_cache(maxsize=1)
def residue_constants() -> Any:
    try:
        from alphafold.common import residue_constants as rc
    except ImportError:  # pragma: no cover - the project's own port, once it exists
        from scalefold.geometry import residue_constants as rc
    return rc


@functools.lru_cache(maxsize=1)
def _index_tables() -> dict[str, np.ndarray]:
    """Per-restype (21 rows, UNK last) atom14 <-> atom37 tables, as AlphaFold's pipeline
    builds them (absent atoms map to index 0 with mask 0)."""
    rc = residue_constants()
    a14_to_a37, a37_to_a14, a14_mask, a37_mask = [], [], [], []
    for letter in rc.restypes:
        resname = rc.restype_1to3[letter]
        names = rc.restype_name_to_atom14_names[resname]
        a14_to_a37.append([rc.atom_order[n] if n else 0 for n in names])
        index14 = {n: i for i, n in enumerate(names) if n}
        a37_to_a14.append([index14.get(n, 0) for n in rc.atom_types])
        a14_mask.append([1.0 if n else 0.0 for n in names])
        a37_mask.append([1.0 if n in rc.residue_atoms[resname] else 0.0 for n in rc.atom_types])
    a14_to_a37.append([0] * 14)
    a37_to_a14.append([0] * 37)
    a14_mask.append([0.0] * 14)
    a37_mask.append([0.0] * 37)
    return {
        "atom14_to_atom37": np.asarray(a14_to_a37, np.int64),  # [21, 14]
        "atom37_to_atom14": np.asarray(a37_to_a14, np.int64),  # [21, 37]
        "atom14_mask": np.asarray(a14_mask, np.float32),  # [21, 14]
        "atom37_mask": np.asarray(a37_mask, np.float32),  # [21, 37]
    }


def atom_index_maps(aatype: np.ndarray) -> dict[str, np.ndarray]:
    """aatype [N] (0..20) -> residx_atom14_to_atom37 [N,14], residx_atom37_to_atom14
    [N,37], atom14_atom_exists [N,14], atom37_atom_exists [N,37]."""
    t = _index_tables()
    aatype = np.minimum(aatype, 20)
    return {
        "residx_atom14_to_atom37": t["atom14_to_atom37"][aatype],
        "residx_atom37_to_atom14": t["atom37_to_atom14"][aatype],
        "atom14_atom_exists": t["atom14_mask"][aatype],
        "atom37_atom_exists": t["atom37_mask"][aatype],
    }


# --------------------------------------------------------------------------- geometry


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float,
           torsion: float) -> np.ndarray:
    """Position of d with |cd| = bond, angle(b, c, d) = angle, dihedral(a, b, c, d) =
    torsion (degrees), the usual NeRF construction."""
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    theta, phi = math.radians(angle), math.radians(torsion)
    local = np.array([-bond * math.cos(theta), bond * math.sin(theta) * math.cos(phi),
                      bond * math.sin(theta) * math.sin(phi)])
    return c + local[0] * bc + local[1] * m + local[2] * n


def _backbone(phi: np.ndarray, psi: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Ideal-geometry N, CA, C positions [N, 3, 3] from per-residue torsions (degrees)."""
    n_res = len(phi)
    out = np.zeros((n_res, 3, 3))
    out[0, 0] = [0.0, 0.0, 0.0]
    out[0, 1] = [_N_CA, 0.0, 0.0]
    angle = math.radians(180.0 - _ANGLE_N_CA_C)
    out[0, 2] = out[0, 1] + _CA_C * np.array([math.cos(angle), math.sin(angle), 0.0])
    for i in range(1, n_res):
        n_prev, ca_prev, c_prev = out[i - 1]
        out[i, 0] = _place(n_prev, ca_prev, c_prev, _C_N, _ANGLE_CA_C_N, psi[i - 1])
        out[i, 1] = _place(ca_prev, c_prev, out[i, 0], _N_CA, _ANGLE_C_N_CA, omega[i - 1])
        out[i, 2] = _place(c_prev, out[i, 0], out[i, 1], _CA_C, _ANGLE_N_CA_C, phi[i])
    return out


def _backbone_frames(bb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AlphaFold's backbone frame from N, CA, C: origin CA, x towards C, N in the xy-plane
    (y > 0). Returns rotations [N,3,3] (columns = axes) and translations [N,3]."""
    n, ca, c = bb[:, 0], bb[:, 1], bb[:, 2]
    ex = c - ca
    ex /= np.linalg.norm(ex, axis=-1, keepdims=True)
    ey = (n - ca) - np.sum((n - ca) * ex, -1, keepdims=True) * ex
    ey /= np.linalg.norm(ey, axis=-1, keepdims=True)
    ez = np.cross(ex, ey)
    return np.stack([ex, ey, ez], axis=-1), ca


def _rot_x(sin: np.ndarray, cos: np.ndarray) -> np.ndarray:
    # [..., 4, 4] rotation about x by the angle with this sine and cosine
    out = np.zeros(sin.shape + (4, 4))
    out[..., 0, 0] = 1.0
    out[..., 3, 3] = 1.0
    out[..., 1, 1], out[..., 1, 2] = cos, -sin
    out[..., 2, 1], out[..., 2, 2] = sin, cos
    return out


def _atoms_from_torsions(aatype: np.ndarray, rot: np.ndarray, trans: np.ndarray,
                         torsions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atom14 positions [N,14,3] and mask [N,14] from backbone frames and the 7 torsion
    angles [N,7] (radians: pre-omega, phi, psi, chi1..4), supplement Alg. 24."""
    rc = residue_constants()
    aatype = np.minimum(aatype, 20)
    default = np.asarray(rc.restype_rigid_group_default_frame)[aatype]  # [N, 8, 4, 4]
    angles = np.concatenate([np.zeros_like(torsions[:, :1]), torsions], axis=-1)  # [N, 8]
    frames = default @ _rot_x(np.sin(angles), np.cos(angles))  # [N, 8, 4, 4]
    # chi2..chi4 frames are defined relative to the previous chi frame
    for g in (5, 6, 7):
        frames[:, g] = frames[:, g - 1] @ frames[:, g]
    backbone = np.zeros((len(aatype), 4, 4))
    backbone[:, :3, :3], backbone[:, :3, 3], backbone[:, 3, 3] = rot, trans, 1.0
    to_global = backbone[:, None] @ frames  # [N, 8, 4, 4]
    group = np.asarray(rc.restype_atom14_to_rigid_group)[aatype]  # [N, 14]
    local = np.asarray(rc.restype_atom14_rigid_group_positions)[aatype]  # [N, 14, 3]
    mask = np.asarray(rc.restype_atom14_mask)[aatype]  # [N, 14]
    atom_frames = np.take_along_axis(to_global, group[:, :, None, None], axis=1)  # [N,14,4,4]
    pos = np.einsum("naij,naj->nai", atom_frames[..., :3, :3], local) + atom_frames[..., :3, 3]
    return pos * mask[..., None], mask


def atom14_to_atom37(aatype: np.ndarray, atom14: np.ndarray) -> np.ndarray:
    """[N,14,...] -> [N,37,...] with absent atoms zero."""
    maps = atom_index_maps(aatype)
    out = np.take_along_axis(
        atom14, maps["residx_atom37_to_atom14"].reshape(*aatype.shape, 37, *([1] * (atom14.ndim - 2))),
        axis=1,
    )
    mask = maps["atom37_atom_exists"].reshape(*aatype.shape, 37, *([1] * (atom14.ndim - 2)))
    return out * mask


def random_torsions(rng: np.random.Generator, n_res: int) -> dict[str, np.ndarray]:
    """Backbone phi/psi (degrees) from helix or strand segments, trans omega, rotamer-like
    chis; a plausible, not physical, chain."""
    phi, psi = np.empty(n_res), np.empty(n_res)
    i = 0
    while i < n_res:
        length = int(rng.integers(4, 12))
        helix = rng.random() < 0.5
        centre = (-63.0, -43.0) if helix else (-120.0, 130.0)
        phi[i : i + length] = centre[0] + rng.normal(0, 8, size=len(phi[i : i + length]))
        psi[i : i + length] = centre[1] + rng.normal(0, 8, size=len(psi[i : i + length]))
        i += length
    omega = 180.0 + rng.normal(0, 4, size=n_res)
    chis = rng.choice([-60.0, 60.0, 180.0], size=(n_res, 4)) + rng.normal(0, 12, size=(n_res, 4))
    return {"phi": phi, "psi": psi, "omega": omega, "chi": chis}


def build_structure(aatype: np.ndarray, torsions: dict[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Atom37 positions [N,37,3] and mask [N,37] for a sequence and its torsions."""
    bb = _backbone(torsions["phi"], torsions["psi"], torsions["omega"])
    rot, trans = _backbone_frames(bb)
    # The psi group places O; AlphaFold's psi is measured N-CA-C-O with O trans to the next
    # N, which this frame convention reproduces from the backbone psi itself.
    angles = np.radians(np.concatenate([
        torsions["omega"][:, None], torsions["phi"][:, None], torsions["psi"][:, None],
        torsions["chi"],
    ], axis=-1))
    atom14, mask14 = _atoms_from_torsions(aatype, rot, trans, angles)
    atom37 = atom14_to_atom37(aatype, atom14)
    mask37 = atom14_to_atom37(aatype, mask14)
    return atom37.astype(np.float32), mask37.astype(np.float32)


def pseudo_beta(aatype: np.ndarray, atom37: np.ndarray, mask37: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """CB (CA for glycine) positions [..., N, 3] and mask [..., N]."""
    rc = residue_constants()
    ca, cb = rc.atom_order["CA"], rc.atom_order["CB"]
    gly = (aatype == GLY)[..., None]
    pos = np.where(gly, atom37[..., ca, :], atom37[..., cb, :])
    mask = np.where(aatype == GLY, mask37[..., ca], mask37[..., cb])
    return pos.astype(np.float32), mask.astype(np.float32)


# --------------------------------------------------------------------------- torsions


def alphafold_template_torsions(aatype: np.ndarray, atom37: np.ndarray, mask37: np.ndarray
                                ) -> dict[str, np.ndarray]:
    """Template torsion features [T,N,7,2] / [T,N,7] exactly as AlphaFold's model derives
    them from template coordinates (``all_atom.atom37_to_torsion_angles`` with
    ``placeholder_for_undefined=False``, what its model uses under ``zero_init``)."""
    out = _jitted_af_torsions()(
        np.asarray(aatype, np.int32), np.asarray(atom37, np.float32),
        np.asarray(mask37, np.float32),
    )
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


@functools.lru_cache(maxsize=1)
def _jitted_af_torsions():
    # Eager JAX dispatches each of its ~hundred ops separately (seconds); one jit is faster.
    import jax
    from alphafold.model import all_atom

    def torsions(aatype, pos, mask):
        return all_atom.atom37_to_torsion_angles(
            aatype=aatype, all_atom_pos=pos, all_atom_mask=mask,
            placeholder_for_undefined=False,
        )

    return jax.jit(torsions)


def scalefold_template_torsions(aatype: np.ndarray, atom37: np.ndarray, mask37: np.ndarray
                                ) -> dict[str, np.ndarray]:
    """The same features from the project's own ``scalefold.geometry.all_atom``."""
    from scalefold.geometry.all_atom import atom37_to_torsion_angles

    out = atom37_to_torsion_angles(
        torch.as_tensor(np.asarray(aatype), dtype=torch.long),
        torch.as_tensor(np.asarray(atom37, np.float32)),
        torch.as_tensor(np.asarray(mask37, np.float32)),
        placeholder_for_undefined=False,
    )
    return {k: v.numpy().astype(np.float32) for k, v in out.items()}


def default_torsion_fn() -> TorsionFn | None:
    """AlphaFold's torsion code when it is installed (the oracle's own definition, so a
    parity test compares the models, not two torsion implementations), else the project's
    ``scalefold.geometry`` port (test_features checks that both agree), else None."""
    try:
        import alphafold.model.all_atom  # noqa: F401

        return alphafold_template_torsions
    except ImportError:
        pass
    try:
        import scalefold.geometry.all_atom  # noqa: F401

        return scalefold_template_torsions
    except ImportError:
        return None


# --------------------------------------------------------------------------- features


def _one_hot(index: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[index]


def _deletion_transform(count: np.ndarray) -> np.ndarray:
    # AlphaFold squashes deletion counts into [0, 1) with 2/pi * arctan(d / 3).
    return (2.0 / np.pi * np.arctan(count / 3.0)).astype(np.float32)


def _mutated_rows(rng, query, n_rows, *, gap_rate=0.08, mutation_rate=0.3):
    """[n_rows, N] homolog-like rows: substitutions, gap runs and deletion counts."""
    n_res = len(query)
    rows = np.repeat(query[None], n_rows, axis=0)
    mutate = rng.random((n_rows, n_res)) < mutation_rate
    rows[mutate] = rng.integers(0, 20, size=int(mutate.sum()))
    unknown = rng.random((n_rows, n_res)) < 0.01
    rows[unknown] = 20
    for r in range(n_rows):
        for _ in range(rng.poisson(gap_rate * n_res / 4)):
            start = int(rng.integers(0, n_res))
            rows[r, start : start + int(rng.integers(1, 6))] = GAP
    deletions = np.where(rng.random((n_rows, n_res)) < 0.05,
                         rng.integers(1, 8, size=(n_rows, n_res)), 0)
    return rows, deletions.astype(np.float32)


def _msa_sample(rng, query, n_clust, n_extra):
    """One recycling iteration's clustered MSA (with BERT masking) and extra MSA."""
    n_res = len(query)
    msa, deletions = _mutated_rows(rng, query, n_clust)
    msa[0], deletions[0] = query, 0.0
    # Cluster statistics: each centre plus a few members drawn around it.
    profile = np.zeros((n_clust, n_res, 23), np.float32)
    deletion_mean = np.zeros((n_clust, n_res), np.float32)
    for c in range(n_clust):
        members, member_del = _mutated_rows(rng, msa[c], int(rng.integers(1, 5)))
        stack = np.concatenate([msa[c : c + 1], members])
        profile[c] = _one_hot(stack, 23).mean(0)
        deletion_mean[c] = np.concatenate([deletions[c : c + 1], member_del]).mean(0)

    # BERT: 15% of positions; of those 10% random aa, 10% from the profile, 10% kept,
    # 70% the mask token.
    true_msa = msa.copy()
    bert = rng.random((n_clust, n_res)) < 0.15
    choice = rng.random((n_clust, n_res))
    masked = msa.copy()
    uniform = bert & (choice < 0.1)
    masked[uniform] = rng.integers(0, 20, size=int(uniform.sum()))
    from_profile = bert & (choice >= 0.1) & (choice < 0.2)
    for r, i in zip(*np.nonzero(from_profile)):
        masked[r, i] = rng.choice(23, p=profile[r, i] / profile[r, i].sum())
    masked[bert & (choice >= 0.3)] = MASK_TOKEN

    msa_feat = np.concatenate([
        _one_hot(masked, 23),  # [S, N, 23]
        (deletions > 0).astype(np.float32)[..., None],
        _deletion_transform(deletions)[..., None],
        profile,  # [S, N, 23]
        _deletion_transform(deletion_mean)[..., None],
    ], axis=-1)  # [S, N, 49]

    extra, extra_del = _mutated_rows(rng, query, n_extra, gap_rate=0.15, mutation_rate=0.45)
    return {
        "msa_feat": msa_feat,
        "msa_mask": np.ones((n_clust, n_res), np.float32),
        "true_msa": true_msa.astype(np.int64),
        "bert_mask": bert.astype(np.float32),
        "extra_msa": extra.astype(np.int64),
        "extra_has_deletion": (extra_del > 0).astype(np.float32),
        "extra_deletion_value": _deletion_transform(extra_del),
        "extra_msa_mask": np.ones((n_extra, n_res), np.float32),
    }


def _templates(rng, query, torsions, n_templ, torsion_fn):
    n_res = len(query)
    aatype = np.repeat(query[None], n_templ, axis=0)
    mutate = rng.random(aatype.shape) < 0.3
    aatype[mutate] = rng.integers(0, 20, size=int(mutate.sum()))
    pos = np.zeros((n_templ, n_res, 37, 3), np.float32)
    mask = np.zeros((n_templ, n_res, 37), np.float32)
    for t in range(n_templ):
        # A homolog: the same fold with perturbed torsions, its own side chains.
        noisy = {k: v + rng.normal(0, 6, size=v.shape) for k, v in torsions.items()}
        pos[t], mask[t] = build_structure(aatype[t], noisy)
        # Unaligned stretches have no coordinates and a gap residue type.
        for _ in range(int(rng.integers(0, 3))):
            start = int(rng.integers(0, n_res))
            stop = start + int(rng.integers(1, 5))
            pos[t, start:stop], mask[t, start:stop] = 0.0, 0.0
            aatype[t, start:stop] = GAP
        # Unresolved side chains beyond CB on a few residues.
        drop = rng.random(n_res) < 0.05
        mask[t, drop, 5:] = 0.0
        pos[t] *= mask[t][..., None]
    pb, pb_mask = pseudo_beta(np.minimum(aatype, 20), pos, mask)
    pb_mask = pb_mask * (aatype != GAP)
    out = {
        "template_aatype": aatype.astype(np.int64),
        "template_all_atom_positions": pos,
        "template_all_atom_mask": mask,
        "template_mask": np.ones((n_templ,), np.float32),
        "template_pseudo_beta": pb * pb_mask[..., None],
        "template_pseudo_beta_mask": pb_mask.astype(np.float32),
    }
    if torsion_fn is not None:
        tors = torsion_fn(aatype, pos, mask)
        out["template_torsion_angles_sin_cos"] = tors["torsion_angles_sin_cos"]
        out["template_alt_torsion_angles_sin_cos"] = tors["alt_torsion_angles_sin_cos"]
        out["template_torsion_angles_mask"] = tors["torsion_angles_mask"]
    else:
        # No torsion implementation available: zero features with a zero mask, so that
        # at least the shapes follow the contract.
        out["template_torsion_angles_sin_cos"] = np.zeros((n_templ, n_res, 7, 2), np.float32)
        out["template_alt_torsion_angles_sin_cos"] = np.zeros((n_templ, n_res, 7, 2), np.float32)
        out["template_torsion_angles_mask"] = np.zeros((n_templ, n_res, 7), np.float32)
    return out


def _pad_residues(array: np.ndarray, axis: int | None, n_pad: int) -> np.ndarray:
    if n_pad == 0 or axis is None:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, n_pad)
    return np.pad(array, widths)


# residue axis of each per-iteration feature (without batch and recycling dims)
_RESIDUE_AXIS = {
    "aatype": 0, "target_feat": 0, "residue_index": 0, "seq_mask": 0, "msa_feat": 1,
    "msa_mask": 1, "true_msa": 1, "bert_mask": 1, "extra_msa": 1, "extra_has_deletion": 1,
    "extra_deletion_value": 1, "extra_msa_mask": 1, "template_aatype": 1,
    "template_all_atom_positions": 1, "template_all_atom_mask": 1, "template_mask": None,
    "template_pseudo_beta": 1, "template_pseudo_beta_mask": 1,
    "template_torsion_angles_sin_cos": 1, "template_alt_torsion_angles_sin_cos": 1,
    "template_torsion_angles_mask": 1, "atom14_atom_exists": 0, "residx_atom14_to_atom37": 0,
    "residx_atom37_to_atom14": 0, "atom37_atom_exists": 0, "all_atom_positions": 0,
    "all_atom_mask": 0, "pseudo_beta": 0, "pseudo_beta_mask": 0, "resolution": None,
    "seq_length": None, "is_distillation": None,
}


def random_alphafold_features(
    cfg: Any = None,
    n_res: int = 16,
    n_clust: int = 8,
    n_extra: int = 12,
    n_templ: int = 2,
    num_iterations: int = 1,
    seed: int = 0,
    *,
    n_pad: int = 0,
    torsion_fn: TorsionFn | None | str = "default",
) -> dict[str, torch.Tensor]:
    """A feature batch of our contract: leading batch dim 1, trailing recycling dim
    ``num_iterations`` (= recycling iterations + 1).

    ``n_res`` includes ``n_pad`` trailing padding residues (all masks zero there), as in a
    batch padded to the crop size. ``cfg`` (an `AlphaFoldConfig`, optional) is checked for
    the feature widths this builds (22 target, 49 MSA channels). ``torsion_fn(aatype
    [T,N], positions [T,N,37,3], mask [T,N,37])`` computes the template torsion features;
    by default AlphaFold's own (see `default_torsion_fn`).
    """
    if cfg is not None:
        if (cfg.input_embedder.tf_dim, cfg.input_embedder.msa_dim) != (22, 49):
            raise ValueError("this builder produces 22 target and 49 MSA feature channels")
        if not cfg.template.enabled:
            n_templ = 0
    if torsion_fn == "default":
        torsion_fn = default_torsion_fn()
    rng = np.random.default_rng(seed)
    n_real = n_res - n_pad
    if n_real < 2:
        raise ValueError("need at least two real residues")

    query = rng.integers(0, 20, size=n_real)
    torsions = random_torsions(rng, n_real)
    residue_index = np.arange(n_real)
    jump = int(rng.integers(1, n_real))
    residue_index[jump:] += int(rng.integers(1, 40))  # an unresolved loop: relpos must clip

    static: dict[str, np.ndarray] = {
        "aatype": query.astype(np.int64),
        "target_feat": np.concatenate(
            [np.zeros((n_real, 1), np.float32), _one_hot(query, 21)], axis=-1
        ),  # [N, 22]: between-segment flag, then aatype one-hot with X
        "residue_index": residue_index.astype(np.int64),
        "seq_mask": np.ones(n_real, np.float32),
        **atom_index_maps(query),
    }
    all_atom, all_atom_mask = build_structure(query, torsions)
    drop = rng.random(n_real) < 0.05
    all_atom_mask[drop, 5:] = 0.0
    all_atom *= all_atom_mask[..., None]
    pb, pb_mask = pseudo_beta(query, all_atom, all_atom_mask)
    static.update({
        "all_atom_positions": all_atom,
        "all_atom_mask": all_atom_mask,
        "pseudo_beta": pb,
        "pseudo_beta_mask": pb_mask,
    })
    if n_templ:
        static.update(_templates(rng, query, torsions, n_templ, torsion_fn))
    static = {k: _pad_residues(v, _RESIDUE_AXIS[k], n_pad) for k, v in static.items()}
    static["resolution"] = np.asarray(2.0, np.float32)
    static["seq_length"] = np.asarray(n_res, np.int64)
    static["is_distillation"] = np.asarray(0.0, np.float32)

    per_iteration = []
    for _ in range(num_iterations):
        sample = _msa_sample(rng, query, n_clust, n_extra)
        per_iteration.append(
            {k: _pad_residues(v, _RESIDUE_AXIS[k], n_pad) for k, v in sample.items()}
        )

    batch = {}
    for key, value in static.items():
        stacked = np.repeat(value[..., None], num_iterations, axis=-1)
        batch[key] = torch.from_numpy(np.ascontiguousarray(stacked[None]))
    for key in per_iteration[0]:
        stacked = np.stack([it[key] for it in per_iteration], axis=-1)
        batch[key] = torch.from_numpy(np.ascontiguousarray(stacked[None]))
    return batch
