"""Parsers for alignment formats: a3m, Stockholm and HHsearch .hhr.

Deletion matrices are computed with array operations over the whole file (a deep MSA
has 10^4 rows of 10^2-10^3 columns; a per-character Python loop would dominate sample
preparation time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass
class Msa:
    sequences: list[str]  # aligned rows, insertions removed; row 0 is the query
    deletion_matrix: np.ndarray  # [num_rows, num_cols] int32: residues deleted before each column
    descriptions: list[str]

    def __len__(self) -> int:
        return len(self.sequences)


@dataclass
class TemplateHit:
    index: int
    name: str
    aligned_cols: int
    sum_probs: float
    query: str  # aligned query segment (with '-')
    hit_sequence: str  # aligned hit segment (with '-')
    indices_query: list[int]  # per alignment column: query residue index or -1
    indices_hit: list[int]  # per alignment column: hit residue index or -1


def parse_fasta(text: str) -> tuple[list[str], list[str]]:
    """(sequences, descriptions); sequences may span several lines, blank lines are ignored."""
    sequences: list[list[str]] = []
    descriptions: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">"):
            descriptions.append(line[1:])
            sequences.append([])
        elif line and sequences:
            sequences[-1].append(line)
    return ["".join(parts) for parts in sequences], descriptions


def _a3m_deletions(rows: list[str]) -> tuple[list[str], np.ndarray]:
    """Strip lowercase insertions; count them before each kept column. Vectorised over the file."""
    if not rows:
        return [], np.zeros((0, 0), dtype=np.int32)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8)  # [total chars]
    is_insert = (flat >= ord("a")) & (flat <= ord("z"))
    inserts = np.flatnonzero(is_insert)  # [I] positions of insert characters
    row_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    row_ends = row_starts + lengths
    inserts_per_row = np.searchsorted(inserts, row_ends) - np.searchsorted(inserts, row_starts)
    kept_per_row = lengths - inserts_per_row
    num_cols = int(kept_per_row[0])
    bad = np.flatnonzero(kept_per_row != num_cols)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"a3m row {i} has {int(kept_per_row[i])} aligned columns, the query has {num_cols}"
        )
    if num_cols == 0:
        return [""] * len(rows), np.zeros((len(rows), 0), dtype=np.int32)
    # Inserts are few: count each towards the kept character after it, the number of kept
    # characters before it in the file; those after their row's last column are not counted.
    following = inserts - np.arange(inserts.size)  # [I] row-major index of the next column
    row = np.searchsorted(row_ends, inserts, side="right")  # [I]
    following = following[following < (row + 1) * num_cols]
    deletions = np.zeros(len(rows) * num_cols, dtype=np.int32)
    run_starts = np.flatnonzero(np.diff(following, prepend=-1))  # following is ascending
    deletions[following[run_starts]] = np.diff(np.append(run_starts, following.size))
    aligned = flat[~is_insert].tobytes().decode("ascii")
    sequences = [aligned[i * num_cols : (i + 1) * num_cols] for i in range(len(rows))]
    return sequences, deletions.reshape(len(rows), num_cols)


def parse_a3m(text: str) -> Msa:
    rows, descriptions = parse_fasta(text)
    sequences, deletions = _a3m_deletions(rows)
    return Msa(sequences=sequences, deletion_matrix=deletions, descriptions=descriptions)


def parse_stockholm(text: str) -> Msa:
    """Columns where the query (first sequence) has '-' are removed; residues of other
    rows in those columns count as deletions before the next kept column."""
    names: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        name, seq = line.split()
        names.setdefault(name, []).append(seq)
    if not names:
        return Msa([], np.zeros((0, 0), dtype=np.int32), [])
    rows = ["".join(parts) for parts in names.values()]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError("Stockholm rows differ in length")
    grid = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8).reshape(len(rows), width)
    gap = ord("-")
    query_gap = grid[0] == gap  # [width]
    inserted = (grid != gap) & query_gap[None, :]  # [rows, width]
    kept_cols = np.flatnonzero(~query_gap)
    csum = np.cumsum(inserted, axis=1)  # inclusive
    at_kept = csum[:, kept_cols]
    previous = np.concatenate([np.zeros((len(rows), 1), csum.dtype), at_kept[:, :-1]], axis=1)
    deletions = (at_kept - previous).astype(np.int32)
    aligned = grid[:, kept_cols]
    sequences = [r.tobytes().decode("ascii") for r in aligned]
    return Msa(sequences=sequences, deletion_matrix=deletions, descriptions=list(names))


# --------------------------------------------------------------------------- hhr

# 'Q name   start SEQUENCE   end (length)' -- anchored at the end so that names of any
# width parse.
_HHR_ALN = re.compile(r"^(\d+)\s+([A-Za-z\-.]+)\s+(\d+)\s+\((\d+)\)\s*$")
_HHR_SKIP = ("ss_dssp", "ss_pred", "ss_conf", "Consensus")


def _residue_indices(segment: str, start: int) -> list[int]:
    """Zero-based residue index per column, -1 for gaps."""
    arr = np.frombuffer(segment.encode("ascii"), dtype=np.uint8)
    is_res = arr != ord("-")
    idx = np.cumsum(is_res) - 1 + start
    return np.where(is_res, idx, -1).tolist()


def _parse_hhr_block(lines: list[str]) -> TemplateHit:
    index = int(lines[0].split()[1])
    name = lines[1][1:] if len(lines) > 1 and lines[1].startswith(">") else ""
    stats = dict(re.findall(r"(\w+)=\s*([^\s%]+)", lines[2] if len(lines) > 2 else ""))
    if "Aligned_cols" not in stats or "Sum_probs" not in stats:
        raise ValueError(f"hhr hit {index}: no summary line with Aligned_cols and Sum_probs")
    query, hit, idx_q, idx_h = [], [], [], []
    for line in lines[3:]:
        if not (line.startswith("Q ") or line.startswith("T ")):
            continue
        fields = line.split(None, 2)
        if len(fields) < 3 or fields[1].startswith(_HHR_SKIP):
            continue
        m = _HHR_ALN.match(fields[2])
        if m is None:
            raise ValueError(f"hhr hit {index}: cannot parse alignment line {line!r}")
        start, segment = int(m.group(1)) - 1, m.group(2)
        if line[0] == "Q":
            query.append(segment)
            idx_q.extend(_residue_indices(segment, start))
        else:
            if len(segment) != len(query[-1] if query else ""):
                raise ValueError(
                    f"hhr hit {index}: template segment length differs from the query's"
                )
            hit.append(segment)
            idx_h.extend(_residue_indices(segment, start))
    return TemplateHit(
        index=index,
        name=name,
        aligned_cols=int(float(stats["Aligned_cols"])),
        sum_probs=float(stats["Sum_probs"]),
        query="".join(query),
        hit_sequence="".join(hit),
        indices_query=idx_q,
        indices_hit=idx_h,
    )


def parse_hhr(text: str) -> list[TemplateHit]:
    """Hits of an HHsearch/HHblits result file, in file order."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("No ")]
    starts.append(len(lines))
    return [_parse_hhr_block(lines[a:b]) for a, b in zip(starts[:-1], starts[1:])]
