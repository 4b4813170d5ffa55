"""MSA features: encoding, de-duplication, block deletion, cluster sampling, BERT-style
masking, nearest-centre assignment and cluster summaries.

All transforms are array operations over whole matrices (no loops over rows or
residues). Indices follow ``scalefold.geometry.residue_constants``: 0..19 amino acids,
20 unknown (X), 21 gap, 22 the masked-MSA token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from scalefold.geometry import residue_constants as rc

from .layout import DataError
from .parsers import Msa

GAP_ID = 21
MASK_ID = 22
NUM_MSA_CLASSES = 23


def _char_lut() -> np.ndarray:
    """byte -> our residue id (via the HHblits alphabet); unknown letters map to X."""
    lut = np.full(256, rc.HHBLITS_AA_TO_ID["X"], dtype=np.int64)
    for aa, hh in rc.HHBLITS_AA_TO_ID.items():
        lut[ord(aa)] = hh
    return np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE, dtype=np.int64)[lut]


def encode_rows(sequences: Sequence[str]) -> np.ndarray:
    """Aligned rows of equal length -> [rows, cols] int64 in our residue order (gap = 21)."""
    if not sequences:
        return np.zeros((0, 0), dtype=np.int64)
    width = len(sequences[0])
    flat = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)
    return _char_lut()[flat].reshape(len(sequences), width)


def sequence_to_aatype(sequence: str) -> np.ndarray:
    """Query sequence -> [N] int64 aatype, 0..19, anything else 20 (X)."""
    lut = np.full(256, rc.restype_order_with_x["X"], dtype=np.int64)
    for aa, i in rc.restype_order.items():
        lut[ord(aa)] = i
    return lut[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


def merge_msas(
    query: str, msas: Sequence[Msa], *, chain: str = "?"
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate MSAs, dropping repeated aligned rows (first occurrence wins).

    Returns msa [S, N] int64 and deletion matrix [S, N] float32; row 0 is the query. A chain
    with no MSA rows at all gets the query alone (one row, no deletions), as the reference
    does. An MSA of another width than the query raises DataError.
    """
    rows: list[str] = []
    dels: list[np.ndarray] = []
    for i, msa in enumerate(msas):
        if len(msa) == 0:
            continue
        if len(msa.sequences[0]) != len(query):
            raise DataError(
                f"MSA {i} has {len(msa.sequences[0])} columns, the query has {len(query)}",
                chain=chain,
            )
        rows.extend(msa.sequences)
        dels.append(msa.deletion_matrix)
    if not rows:
        return encode_rows([query]), np.zeros((1, len(query)), dtype=np.float32)
    deletions = np.concatenate(dels, axis=0)
    # Fixed-width byte strings let numpy find each distinct row's first index without a
    # Python loop over rows.
    _, first = np.unique(np.array(rows, dtype=f"S{len(query)}"), return_index=True)
    first.sort()
    msa = encode_rows([rows[i] for i in first])
    return msa, deletions[first].astype(np.float32)


@dataclass(frozen=True)
class MsaConfig:
    max_msa_clusters: int = 124
    max_extra_msa: int = 1024
    masked_msa_enabled: bool = True
    masked_msa_profile_prob: float = 0.1
    masked_msa_same_prob: float = 0.1
    masked_msa_uniform_prob: float = 0.1
    masked_msa_replace_fraction: float = 0.15
    # AlphaFold's block deletion; the MLPerf reference does not apply it, hence off.
    block_delete_msa: bool = False
    msa_fraction_per_block: float = 0.3
    num_blocks: int = 5
    # Agreement matmul chunk (rows of the extra MSA); bounds memory to chunk x N x 21 floats.
    cluster_chunk_rows: int = 4096


def block_delete(
    msa: np.ndarray, deletions: np.ndarray, rng: np.random.Generator, config: MsaConfig
):
    """Remove ``num_blocks`` contiguous blocks of rows (each a fraction of the MSA); row 0 stays."""
    num = msa.shape[0]
    block = int(num * config.msa_fraction_per_block)
    if num <= 1 or block == 0:
        return msa, deletions
    starts = rng.integers(0, num, size=config.num_blocks)  # [blocks]
    doomed = np.clip(starts[:, None] + np.arange(block)[None, :], 0, num - 1).ravel()
    keep = np.ones(num, dtype=bool)
    keep[doomed] = False
    keep[0] = True
    return msa[keep], deletions[keep]


def msa_profile(msa: np.ndarray, num_classes: int = 22) -> np.ndarray:
    """Per-column class frequencies [N, num_classes] float32 of msa [S, N]."""
    s, n = msa.shape
    flat = (np.arange(n)[None, :] * num_classes + msa).ravel()
    counts = np.bincount(flat, minlength=n * num_classes).reshape(n, num_classes)
    return (counts / max(s, 1)).astype(np.float32)


def mask_msa(msa: np.ndarray, profile: np.ndarray, rng: np.random.Generator, config: MsaConfig):
    """BERT corruption of the cluster rows [C, N]: each position is chosen with probability
    ``replace_fraction`` and replaced by a draw from 0.1 uniform amino acid, 0.1 the column
    profile, 0.1 itself, and the rest the mask token. Returns (corrupted, bert_mask f32)."""
    c, n = msa.shape
    chosen = rng.random((c, n)) < config.masked_msa_replace_fraction  # [C, N]
    rows, cols = np.nonzero(chosen)
    probs = np.zeros((rows.size, NUM_MSA_CLASSES), dtype=np.float64)  # [M, 23]
    probs[:, :20] += config.masked_msa_uniform_prob / 20.0
    probs[:, :22] += config.masked_msa_profile_prob * profile[cols]
    probs[np.arange(rows.size), msa[rows, cols]] += config.masked_msa_same_prob
    probs[:, MASK_ID] += (
        1.0
        - config.masked_msa_profile_prob
        - config.masked_msa_same_prob
        - config.masked_msa_uniform_prob
    )
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(rows.size)[:, None] * cdf[:, -1:]
    draws = np.minimum((cdf <= u).sum(axis=1), NUM_MSA_CLASSES - 1)
    out = msa.copy()
    out[rows, cols] = draws
    return out, chosen.astype(np.float32)


def cluster_keys(rows: np.ndarray) -> np.ndarray:
    """[R, N] int32 lookup keys of MSA rows for `assign_with_keys`: residue i of class a
    (0..20) is row 21 i + a of the centre-match table; gaps and mask tokens the zero row.

    Computed once per sample for the whole MSA: every recycling iteration's extra rows
    are a subset of its rows.
    """
    n = rows.shape[1]
    keys = (np.arange(n, dtype=np.int32)[None, :] * 21 + rows).astype(np.int32)
    keys[rows > 20] = n * 21
    return keys


def assign_with_keys(keys: np.ndarray, centres: np.ndarray, chunk_rows: int) -> np.ndarray:
    """`assign_clusters` for rows given by their `cluster_keys`."""
    e = keys.shape[0]
    c, n = centres.shape
    if e == 0:
        return np.zeros(0, dtype=np.int64)
    none = n * 21  # row of zeros for gaps / mask tokens
    table = np.zeros((none + 1, c), dtype=np.float32)  # [(residue, class), centre]
    res_idx = np.arange(n)[None, :].repeat(c, 0)
    ok = centres <= 20
    table[(res_idx * 21 + centres)[ok], np.nonzero(ok)[0]] = 1.0
    table_t = torch.from_numpy(table)
    out = np.empty(e, dtype=np.int64)
    for lo in range(0, e, chunk_rows):  # bounded memory for the [chunk, C] agreement
        bag = torch.from_numpy(keys[lo : lo + chunk_rows])
        agreement = torch.nn.functional.embedding_bag(bag, table_t, mode="sum")  # [chunk, C]
        out[lo : lo + chunk_rows] = agreement.argmax(dim=1).numpy()
    return out


def assign_clusters(extra: np.ndarray, centres: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Index of the centre [C, N] agreeing with each extra row [E, N] at the most positions.

    Agreement counts identical residues 0..20 (gaps and mask tokens do not count); ties
    go to the lowest centre index. Instead of a one-hot matmul (E x 21N x C multiply-adds)
    each extra row sums N rows of a (21N + 1) x C table of centre matches: an
    embedding-bag gather, E x N x C additions, exact in float32.
    """
    return assign_with_keys(cluster_keys(extra), centres, chunk_rows)


def summarize_clusters(
    centres: np.ndarray,
    centre_deletions: np.ndarray,
    extra: np.ndarray,
    extra_deletions: np.ndarray,
    assignment: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster profile [C, N, 23] and mean deletion count [C, N], centre included."""
    c, n = centres.shape
    members = np.bincount(assignment, minlength=c).astype(np.float32)  # [C]
    counts = (1e-6 + 1.0 + members)[:, None]  # [C, 1]; all positions unpadded here
    cell = (assignment[:, None] * n + np.arange(n)[None, :]).ravel()  # [E*N] (cluster, residue)
    hist = np.bincount(cell * NUM_MSA_CLASSES + extra.ravel(), minlength=c * n * NUM_MSA_CLASSES)
    hist = hist.reshape(c, n, NUM_MSA_CLASSES).astype(np.float32)
    hist[np.arange(c)[:, None], np.arange(n)[None, :], centres] += 1.0
    del_sum = np.bincount(cell, weights=extra_deletions.ravel(), minlength=c * n).reshape(c, n)
    del_sum = del_sum.astype(np.float32) + centre_deletions
    return hist / counts[:, :, None], del_sum / counts


def summarize_with_keys(
    centres: np.ndarray,
    centre_deletions: np.ndarray,
    extra_hist_keys: np.ndarray,
    extra_deletions: np.ndarray,
    assignment: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`summarize_clusters` with the extra rows given by their histogram keys
    ``column * 23 + residue`` ([E, N] int32, made once per sample): the same counts and
    sums, in the same order, so the same bits."""
    c, n = centres.shape
    e = assignment.shape[0]
    members = np.bincount(assignment, minlength=c).astype(np.float32)  # [C]
    counts = (1e-6 + 1.0 + members)[:, None]  # [C, 1]
    row_base = assignment.astype(np.int64) * (n * NUM_MSA_CLASSES)  # [E]
    hist = np.bincount((row_base[:, None] + extra_hist_keys).ravel(),
                       minlength=c * n * NUM_MSA_CLASSES)
    hist = hist.reshape(c, n, NUM_MSA_CLASSES).astype(np.float32)
    hist[np.arange(c)[:, None], np.arange(n)[None, :], centres] += 1.0
    cell = (assignment.astype(np.int64)[:, None] * n + np.arange(n)[None, :]).reshape(e * n)
    del_sum = np.bincount(cell, weights=extra_deletions.reshape(e * n), minlength=c * n)
    del_sum = del_sum.reshape(c, n).astype(np.float32) + centre_deletions
    return hist / counts[:, :, None], del_sum / counts


def deletion_value(deletions: np.ndarray) -> np.ndarray:
    """Deletion counts squashed to [0, 1): atan(d / 3) * 2 / pi."""
    return (np.arctan(deletions / 3.0) * (2.0 / np.pi)).astype(np.float32)


def one_hot(ids: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[ids]
