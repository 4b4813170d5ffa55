"""From one chain's structure, MSAs and template arrays to the model's feature dict
(docs/CONTRACTS.md), with the MLPerf reference's transforms.

Order of operations (as in the reference): MSA profile over all rows; per recycling
iteration r (seed + r): cluster-centre sampling (query first), masked-MSA corruption of the
centres, nearest-centre assignment of the remaining rows over the full length, cluster
profiles, random choice of extra rows; one crop window and template subset per sample
(seed only), so every recycling iteration sees the same residues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from scalefold.geometry import all_atom
from scalefold.geometry import residue_constants as rc

from . import msa as msa_ops
from .msa import MsaConfig

# Feature names of docs/CONTRACTS.md, by role; all carry a trailing recycling dimension.
INPUT_FEATURES = (
    "aatype", "target_feat", "residue_index", "seq_mask", "msa_feat", "msa_mask", "extra_msa",
    "extra_has_deletion", "extra_deletion_value", "extra_msa_mask", "template_aatype",
    "template_all_atom_positions", "template_all_atom_mask", "template_mask",
    "template_pseudo_beta", "template_pseudo_beta_mask", "template_torsion_angles_sin_cos",
    "template_alt_torsion_angles_sin_cos", "template_torsion_angles_mask", "atom14_atom_exists",
    "residx_atom14_to_atom37", "residx_atom37_to_atom14", "atom37_atom_exists",
)  # fmt: skip
GROUND_TRUTH_FEATURES = (
    "all_atom_positions", "all_atom_mask", "atom14_gt_positions", "atom14_alt_gt_positions",
    "atom14_gt_exists", "atom14_alt_gt_exists", "atom14_atom_is_ambiguous", "rigidgroups_gt_frames",
    "rigidgroups_alt_gt_frames", "rigidgroups_gt_exists", "rigidgroups_group_exists",
    "rigidgroups_group_is_ambiguous", "backbone_rigid_tensor", "backbone_rigid_mask",
    "chi_angles_sin_cos", "chi_mask", "pseudo_beta", "pseudo_beta_mask", "true_msa", "bert_mask",
    "resolution", "seq_length", "is_distillation",
)  # fmt: skip
FEATURE_NAMES = INPUT_FEATURES + GROUND_TRUTH_FEATURES
LONG_FEATURES = frozenset(
    {"aatype", "residue_index", "extra_msa", "template_aatype", "residx_atom14_to_atom37",
     "residx_atom37_to_atom14", "true_msa", "seq_length"}
)  # fmt: skip


@dataclass(frozen=True)
class FeatureConfig:
    mode: Literal["train", "eval"] = "train"
    crop_size: int = 256  # train only; eval keeps the whole chain
    num_recycling_iters: int = 3  # R = num_recycling_iters + 1
    max_templates: int = 4
    msa: MsaConfig = field(default_factory=MsaConfig)


@dataclass
class RawChain:
    """Unprocessed inputs of one chain (arrays over the full sequence)."""

    chain_id: str
    sequence: str
    all_atom_positions: np.ndarray  # [N, 37, 3] float32
    all_atom_mask: np.ndarray  # [N, 37] float32
    msa: np.ndarray  # [S, N] int64, row 0 = query, our residue ids (gap 21)
    deletion_matrix: np.ndarray  # [S, N] float32
    template_aatype: np.ndarray  # [T, N] int64
    template_all_atom_positions: np.ndarray  # [T, N, 37, 3] float32
    template_all_atom_mask: np.ndarray  # [T, N, 37] float32
    resolution: float = 0.0


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """Independent generator per (seed, purpose, iteration); seeds may be any 64-bit int."""
    return np.random.default_rng([int(seed) % (2**64), *stream])


_CROP_STREAM, _BLOCK_STREAM, _RECYCLE_STREAM = 1, 2, 3


def _pad(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-pad x at the end of each axis up to ``shape``."""
    if x.shape == shape:
        return x
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(slice(0, s) for s in x.shape)] = x
    return out


def _structure_features(raw: RawChain, aatype: np.ndarray) -> dict[str, np.ndarray]:
    """Per-residue ground truth and atom layout maps over the full chain (float64 for chi accuracy)."""
    aa = torch.from_numpy(aatype)
    pos = torch.from_numpy(raw.all_atom_positions.astype(np.float64))
    mask = torch.from_numpy(raw.all_atom_mask.astype(np.float64))
    gt = all_atom.ground_truth_features(aa, pos, mask)
    out = {k: v.numpy() for k, v in gt.items()}
    out["all_atom_positions"] = raw.all_atom_positions
    out["all_atom_mask"] = raw.all_atom_mask
    return out


def _template_features(raw: RawChain) -> dict[str, np.ndarray]:
    t_aa = torch.from_numpy(raw.template_aatype)
    # Gap (21) has no atoms; the geometry tables stop at 20 (unknown), like the reference's clamp.
    t_aa_clamped = t_aa.clamp(max=rc.restype_num)
    # float32, as the reference computes them: the model reads the sin/cos of masked
    # torsions too (the template angle feature is not multiplied by the mask), and there
    # they depend on the precision (degenerate geometry; up to ~1 apart between float32
    # and float64 on the mini dataset), so float64 would give other inputs than the
    # reference's. Unmasked entries agree with float64 to ~4e-6 (tests/data/test_features.py).
    pos = torch.from_numpy(raw.template_all_atom_positions.astype(np.float32))
    mask = torch.from_numpy(raw.template_all_atom_mask.astype(np.float32))
    tors = all_atom.atom37_to_torsion_angles(t_aa_clamped, pos, mask)
    pb, pb_mask = all_atom.pseudo_beta(t_aa_clamped, pos, mask)
    return {
        "template_aatype": raw.template_aatype,
        "template_all_atom_positions": raw.template_all_atom_positions,
        "template_all_atom_mask": raw.template_all_atom_mask,
        "template_mask": np.ones(raw.template_aatype.shape[0], dtype=np.float32),
        "template_pseudo_beta": pb.numpy(),
        "template_pseudo_beta_mask": pb_mask.numpy(),
        "template_torsion_angles_sin_cos": tors["torsion_angles_sin_cos"].numpy(),
        "template_alt_torsion_angles_sin_cos": tors["alt_torsion_angles_sin_cos"].numpy(),
        "template_torsion_angles_mask": tors["torsion_angles_mask"].numpy(),
    }


def process_chain(raw: RawChain, config: FeatureConfig, seed: int) -> dict[str, torch.Tensor]:
    """Feature dict with a trailing recycling dimension R = num_recycling_iters + 1.

    Shapes (before R): residues N' = crop size in training (zero-padded), the full length in
    evaluation; 124 cluster rows, 1024 extra rows and 4 templates, zero-padded.
    """
    n = len(raw.sequence)
    mcfg = config.msa
    train = config.mode == "train"
    aatype = msa_ops.sequence_to_aatype(raw.sequence)  # [N]
    msa, deletions = raw.msa, raw.deletion_matrix
    if msa.shape[1] != n:
        raise ValueError(f"chain {raw.chain_id}: MSA width {msa.shape[1]} != sequence length {n}")
    if train and mcfg.block_delete_msa:
        msa, deletions = msa_ops.block_delete(msa, deletions, _rng(seed, _BLOCK_STREAM), mcfg)

    fixed = _structure_features(raw, aatype)
    fixed.update(_template_features(raw))

    # One crop window and template subset for all recycling iterations.
    crop_rng = _rng(seed, _CROP_STREAM)
    num_t = raw.template_aatype.shape[0]
    if train:
        crop = min(n, config.crop_size)
        if num_t > 0:
            perm = crop_rng.permutation(num_t)
            t_start = int(crop_rng.integers(0, num_t + 1))
            templates = perm[t_start : t_start + min(num_t - t_start, config.max_templates)]
        else:
            templates = np.zeros(0, dtype=np.int64)
        start = int(crop_rng.integers(0, n - crop + 1))
        n_out = config.crop_size
    else:
        crop, start, n_out = n, 0, n
        templates = np.arange(min(num_t, config.max_templates))
    cols = slice(start, start + crop)
    t_out = config.max_templates

    out: dict[str, np.ndarray] = {}
    # Non-ensembled features: crop residues, subset templates, pad, repeat over R below.
    for name, value in fixed.items():
        if name.startswith("template_"):
            value = value[templates]
            value = value[:, cols] if value.ndim > 1 else value
            out[name] = _pad(
                value, (t_out, n_out, *value.shape[2:]) if value.ndim > 1 else (t_out,)
            )
        else:
            value = value[cols]
            out[name] = _pad(value, (n_out, *value.shape[1:]))
    out["aatype"] = _pad(aatype[cols], (n_out,))
    out["residue_index"] = _pad(np.arange(n, dtype=np.int64)[cols], (n_out,))
    out["seq_mask"] = _pad(np.ones(crop, dtype=np.float32), (n_out,))
    target = np.concatenate(
        [np.zeros((crop, 1), np.float32), msa_ops.one_hot(aatype[cols], 21)], axis=-1
    )
    out["target_feat"] = _pad(target, (n_out, 22))
    out["resolution"] = np.float32(raw.resolution)
    out["seq_length"] = np.int64(crop)
    out["is_distillation"] = np.float32(0.0)

    sparse, window, profile = _msa_per_sample(msa, deletions, cols)
    per_iter = [
        _msa_iteration(
            msa, deletions, profile, cols, crop, n_out, mcfg, _rng(seed, _RECYCLE_STREAM, r),
            sparse, window,
        )
        for r in range(config.num_recycling_iters + 1)
    ]
    num_r = len(per_iter)
    result: dict[str, torch.Tensor] = {}
    for name in FEATURE_NAMES:
        if name in per_iter[0]:
            arr = np.stack([it[name] for it in per_iter], axis=-1)
            t = torch.from_numpy(arr)
        else:
            t = torch.from_numpy(np.asarray(out[name]))
            t = t.unsqueeze(-1).expand(*t.shape, num_r).contiguous()
        result[name] = t.long() if name in LONG_FEATURES else t.float()
    return result


def _msa_per_sample(
    msa: np.ndarray, deletions: np.ndarray, cols: slice
) -> tuple[msa_ops.SparseMsa, msa_ops.SparseMsa, np.ndarray]:
    """What every recycling iteration reads, made once per sample: the MSA's sparse form
    over the whole chain and over the crop window (each iteration's extra rows are a
    subset of its rows), and its profile [N, 22] over all rows.

    The background (each column's most frequent class) decides only which cells are
    stored, never a result, so about 1024 evenly spaced rows suffice to find it.
    """
    sample = msa[:: max(1, msa.shape[0] // 1024)]
    background = msa_ops.msa_profile(sample).argmax(axis=-1)  # [N]
    sparse = msa_ops.SparseMsa.of(msa, deletions, background)
    return sparse, sparse.window(cols), sparse.profile()


def _msa_iteration(
    msa: np.ndarray,
    deletions: np.ndarray,
    profile: np.ndarray,
    cols: slice,
    crop: int,
    n_out: int,
    cfg: MsaConfig,
    rng: np.random.Generator,
    sparse: msa_ops.SparseMsa,
    window: msa_ops.SparseMsa,
) -> dict[str, np.ndarray]:
    """The ensembled MSA features of one recycling iteration; ``sparse`` is the MSA's
    sparse form over the whole chain, ``window`` over the crop window."""
    s = msa.shape[0]
    order = np.concatenate([[0], 1 + rng.permutation(s - 1)])  # query stays the first centre
    sel, rest = order[: cfg.max_msa_clusters], order[cfg.max_msa_clusters :]
    centres, centre_del = msa[sel], deletions[sel]  # [C, N]
    if cfg.masked_msa_enabled:
        corrupted, bert_mask = msa_ops.mask_msa(centres, profile, rng, cfg)
    else:
        corrupted, bert_mask = centres, np.zeros(centres.shape, np.float32)
    # Assignment looks at the whole chain; the summaries only at the crop window.
    assignment = msa_ops.assign_sparse(sparse, corrupted, cfg.cluster_chunk_rows)[rest]
    c_profile, c_del_mean = msa_ops.summarize_sparse(
        corrupted[:, cols], centre_del[:, cols], window, rest, assignment
    )
    pick = rest[rng.permutation(rest.shape[0])[: cfg.max_extra_msa]]
    extra_c, extra_del_c = msa[pick][:, cols], deletions[pick][:, cols]
    cdel = centre_del[:, cols]
    msa_feat = np.concatenate(
        [
            msa_ops.one_hot(corrupted[:, cols], msa_ops.NUM_MSA_CLASSES),
            np.clip(cdel, 0.0, 1.0)[..., None],
            msa_ops.deletion_value(cdel)[..., None],
            c_profile,
            msa_ops.deletion_value(c_del_mean)[..., None],
        ],
        axis=-1,
    )  # [C, crop, 49]
    nc, ne = cfg.max_msa_clusters, cfg.max_extra_msa
    return {
        "msa_feat": _pad(msa_feat.astype(np.float32), (nc, n_out, 49)),
        "msa_mask": _pad(np.ones((len(sel), crop), np.float32), (nc, n_out)),
        "true_msa": _pad(centres[:, cols], (nc, n_out)),
        "bert_mask": _pad(bert_mask[:, cols], (nc, n_out)),
        "extra_msa": _pad(extra_c, (ne, n_out)),
        "extra_has_deletion": _pad(np.clip(extra_del_c, 0.0, 1.0).astype(np.float32), (ne, n_out)),
        "extra_deletion_value": _pad(msa_ops.deletion_value(extra_del_c), (ne, n_out)),
        "extra_msa_mask": _pad(np.ones(extra_c.shape, np.float32), (ne, n_out)),
    }
