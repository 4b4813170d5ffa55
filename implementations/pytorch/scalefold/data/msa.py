"""MSA features: encoding, de-duplication, block deletion, cluster sampling, BERT-style
masking, nearest-centre assignment and cluster summaries.

All transforms are array operations over whole matrices (no loops over residues; the
de-duplication hashes each row once). Indices follow ``scalefold.geometry.residue_constants``: 0..19 amino acids,
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


def _char_table() -> bytes:
    """256-byte translation table: byte -> our residue id (via the HHblits alphabet);
    unknown letters map to X."""
    lut = np.full(256, rc.HHBLITS_AA_TO_ID["X"], dtype=np.int64)
    for aa, hh in rc.HHBLITS_AA_TO_ID.items():
        lut[ord(aa)] = hh
    return np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE, dtype=np.uint8)[lut].tobytes()


def encode_rows(sequences: Sequence[str]) -> np.ndarray:
    """Aligned rows of equal length -> [rows, cols] int64 in our residue order (gap = 21)."""
    if not sequences:
        return np.zeros((0, 0), dtype=np.int64)
    width = len(sequences[0])
    ids = "".join(sequences).encode("ascii").translate(_char_table())
    return np.frombuffer(ids, dtype=np.uint8).astype(np.int64).reshape(len(sequences), width)


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
    first_of: dict[str, int] = {}
    for i, row in enumerate(rows):  # hashing rows: far cheaper than sorting them
        first_of.setdefault(row, i)
    first = np.fromiter(first_of.values(), dtype=np.int64, count=len(first_of))  # ascending
    msa = encode_rows(list(first_of))
    if len(first) < len(rows):
        deletions = deletions[first]
    return msa, deletions.astype(np.float32)


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
    # Rows per nearest-centre assignment step; bounds memory to chunk x C floats.
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


@dataclass(frozen=True)
class SparseMsa:
    """An MSA [S, W] as the cells that differ from their column's background class, plus
    its nonzero deletion counts.

    Nearest-centre assignment and the cluster summaries visit every cell of every extra
    row in every recycling iteration. A cell holding its column's background class adds
    the same to every row that holds it, so both follow from the other cells and the row
    counts; with the most frequent class as background, most cells of a deep MSA need no
    visit. Made once per sample (`of`), cut to the crop window once (`window`).
    """

    background: np.ndarray  # [W] int64: the background class of each column
    offsets: np.ndarray  # [S + 1] int64: row r's cells are entries offsets[r]:offsets[r + 1]
    keys: np.ndarray  # [K] int32: column * 23 + class of each off-background cell, row-major
    del_rows: np.ndarray  # [D] int64: row of each nonzero deletion count
    del_cols: np.ndarray  # [D] int64
    del_counts: np.ndarray  # [D] float64

    @property
    def num_rows(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def width(self) -> int:
        return self.background.shape[0]

    @staticmethod
    def of(msa: np.ndarray, deletions: np.ndarray, background: np.ndarray) -> SparseMsa:
        """msa [S, W] classes 0..22, deletions [S, W], background [W] (any classes; the
        most frequent ones make the sparse form smallest)."""
        s, w = msa.shape
        if deletions.shape != msa.shape or background.shape != (w,):
            raise ValueError(
                f"SparseMsa: msa {msa.shape}, deletions {deletions.shape} and background "
                f"{background.shape} do not match"
            )
        background = np.asarray(background, dtype=np.int64)
        # Byte-wide classes (0..22): a quarter of the memory traffic of int64.
        classes = msa.astype(np.uint8)  # [S, W]
        off = classes != background.astype(np.uint8)[None, :]  # [S, W]
        flat = np.flatnonzero(off)  # [K] row-major
        counts = off.sum(axis=1, dtype=np.int64)  # [S]
        offsets = np.zeros(s + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        all_keys = np.arange(w, dtype=np.int32)[None, :] * NUM_MSA_CLASSES + classes  # [S, W]
        keys = all_keys.reshape(-1)[flat]
        # (A bool mask first: numpy finds the nonzeros of a bool array far faster.)
        dflat = np.flatnonzero(deletions != 0)  # [D]
        del_rows, del_cols = np.divmod(dflat, w)
        del_counts = deletions.reshape(-1)[dflat].astype(np.float64)
        return SparseMsa(background, offsets, keys, del_rows, del_cols, del_counts)

    def profile(self, num_classes: int = 22) -> np.ndarray:
        """`msa_profile` [W, num_classes] of the MSA from its sparse form: the same counts,
        so the same bits; each column's background count is its rows less the others."""
        s, w = self.num_rows, self.width
        counts = np.bincount(self.keys, minlength=w * NUM_MSA_CLASSES)
        counts = counts.reshape(w, NUM_MSA_CLASSES)
        counts[np.arange(w), self.background] = s - counts.sum(axis=1)
        return (counts[:, :num_classes] / max(s, 1)).astype(np.float32)

    def window(self, cols: slice) -> SparseMsa:
        """The columns ``cols`` (a step-1 slice) of this MSA, numbered from 0."""
        start, stop, step = cols.indices(self.width)
        if step != 1:
            raise ValueError(f"SparseMsa.window: column step {step}, only 1 is supported")
        if (start, stop) == (0, self.width):
            return self
        key_lo, key_hi = start * NUM_MSA_CLASSES, stop * NUM_MSA_CLASSES
        inside = (self.keys >= key_lo) & (self.keys < key_hi)  # [K]
        kept_before = np.zeros(inside.shape[0] + 1, dtype=np.int64)  # [K + 1]
        np.cumsum(inside, out=kept_before[1:])
        d_inside = (self.del_cols >= start) & (self.del_cols < stop)  # [D]
        return SparseMsa(
            self.background[start:stop], kept_before[self.offsets],
            self.keys[inside] - np.int32(key_lo), self.del_rows[d_inside],
            self.del_cols[d_inside] - start, self.del_counts[d_inside],
        )


def assign_sparse(msa: SparseMsa, centres: np.ndarray, chunk_rows: int) -> np.ndarray:
    """`assign_clusters` for every row of ``msa`` [S]: the nearest centre of each.

    A row's agreement with the centres is that of an all-background row plus, for each
    of its off-background cells, the change that cell makes: an embedding-bag sum of
    rows of a (23 W) x C table over the off-background cells only. All terms are small
    integers, exact in float32 in any order, so the result is that of the dense count.
    """
    s = msa.num_rows
    c, n = centres.shape
    if n != msa.width:
        raise ValueError(f"assign_sparse: centres have {n} columns, the MSA {msa.width}")
    out = np.empty(s, dtype=np.int64)
    if s == 0:
        return out
    match = np.zeros((n, NUM_MSA_CLASSES, c), dtype=np.float32)  # [W, 23, C]
    centre_idx, col_idx = np.nonzero(centres <= 20)  # gaps and mask tokens match nothing
    match[col_idx, centres[centre_idx, col_idx], centre_idx] = 1.0
    on_background = match[np.arange(n), msa.background]  # [W, C] (a copy)
    base = torch.from_numpy(on_background.sum(axis=0))  # [C] agreement of an all-background row
    match -= on_background[:, None, :]  # now: the change a cell of each class makes
    table = torch.from_numpy(match.reshape(n * NUM_MSA_CLASSES, c))
    keys = torch.from_numpy(msa.keys)
    for lo in range(0, s, chunk_rows):  # bounded memory for the [chunk, C] agreement
        hi = min(s, lo + chunk_rows)
        first, last = int(msa.offsets[lo]), int(msa.offsets[hi])
        # int32 indices and offsets: the embedding bag's faster path
        offsets = torch.from_numpy((msa.offsets[lo : hi + 1] - first).astype(np.int32))
        change = torch.nn.functional.embedding_bag(
            keys[first:last], table, offsets, mode="sum", include_last_offset=True
        )  # [chunk, C]
        # numpy's argmax: first maximum, like torch's, and a few times faster here
        out[lo:hi] = change.add_(base).numpy().argmax(axis=1)
    return out


def assign_clusters(extra: np.ndarray, centres: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Index of the centre [C, N] agreeing with each extra row [E, N] at the most positions.

    Agreement counts identical residues 0..20 (gaps and mask tokens do not count); ties
    go to the lowest centre index.
    """
    sparse = SparseMsa.of(extra, np.zeros(extra.shape, np.float32), _most_frequent(extra))
    return assign_sparse(sparse, centres, chunk_rows)


def summarize_sparse(
    centres: np.ndarray,
    centre_deletions: np.ndarray,
    msa: SparseMsa,
    extra_rows: np.ndarray,
    assignment: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`summarize_clusters` of the rows ``extra_rows`` [E] of ``msa``, assigned to the
    centres [C, W] by ``assignment`` [E].

    Histogram counts come from the off-background cells; each column's background class
    gets the cluster's remaining members. Counts are integers, and so are the deletion
    counts, whose float64 sums are therefore exact in any order: the same bits as the
    dense summaries.
    """
    c, n = centres.shape
    if n != msa.width:
        raise ValueError(f"summarize_sparse: centres have {n} columns, the MSA {msa.width}")
    cluster = np.full(msa.num_rows, c, dtype=np.int64)  # [S]; bin c collects non-extra rows
    cluster[extra_rows] = assignment
    members = np.bincount(assignment, minlength=c)  # [C]
    cells = n * NUM_MSA_CLASSES
    # [K] (cluster, column, class) bin of each cell: its row's cluster spread over its cells
    bins = np.repeat(cluster * cells, np.diff(msa.offsets)) + msa.keys
    hist = np.bincount(bins, minlength=(c + 1) * cells)
    hist = hist[: c * cells].reshape(c, n, NUM_MSA_CLASSES)
    # (einsum: numpy's sum over a last axis of 23 is several times slower)
    hist[:, np.arange(n), msa.background] = members[:, None] - np.einsum("cwk->cw", hist)
    hist = hist.astype(np.float32)
    hist[np.arange(c)[:, None], np.arange(n)[None, :], centres] += 1.0
    counts = (1e-6 + 1.0 + members.astype(np.float32))[:, None]  # [C, 1]
    del_sum = np.bincount(cluster[msa.del_rows] * n + msa.del_cols, weights=msa.del_counts,
                          minlength=(c + 1) * n)
    del_sum = del_sum[: c * n].reshape(c, n).astype(np.float32) + centre_deletions
    return hist / counts[:, :, None], del_sum / counts


def summarize_clusters(
    centres: np.ndarray,
    centre_deletions: np.ndarray,
    extra: np.ndarray,
    extra_deletions: np.ndarray,
    assignment: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster profile [C, N, 23] and mean deletion count [C, N], centre included, of the
    extra rows [E, N] assigned to the centres [C, N]."""
    sparse = SparseMsa.of(extra, extra_deletions, _most_frequent(extra))
    return summarize_sparse(centres, centre_deletions, sparse,
                            np.arange(extra.shape[0]), assignment)


def _most_frequent(msa: np.ndarray) -> np.ndarray:
    """[W] most frequent class of each column of msa [S, W] (0 for an empty MSA)."""
    if msa.shape[0] == 0:
        return np.zeros(msa.shape[1], dtype=np.int64)
    return msa_profile(msa, NUM_MSA_CLASSES).argmax(axis=-1)


def deletion_value(deletions: np.ndarray) -> np.ndarray:
    """Deletion counts squashed to [0, 1): atan(d / 3) * 2 / pi."""
    return (np.arctan(deletions / 3.0) * (2.0 / np.pi)).astype(np.float32)


def one_hot(ids: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[ids]
