"""Template features from HHsearch hits: the reference's hit filters, realignment of hits
whose sequence differs from the stored structure with Kalign 3.3.5, and atom arrays.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalefold.geometry import residue_constants as rc

from .layout import DataError, MmcifDictStore
from .msa import encode_rows
from .parsers import TemplateHit, parse_a3m

KALIGN_HELP = (
    "Kalign (version 3.3.5, the Debian/Ubuntu package 'kalign': `apt-get install -y kalign`) is "
    "required to realign template hits; the benchmark runs with templates enabled."
)


class KalignNotFoundError(RuntimeError):
    pass


class TemplateSkip(Exception):
    """A hit that cannot be used; the reason is logged and the next hit is tried."""


@dataclass(frozen=True)
class TemplateConfig:
    max_templates: int = 4
    # Training shuffles the best 20 prefiltered hits; evaluation keeps the ranking (None).
    shuffle_top_k: int | None = 20
    days_before_release: int = 60
    max_subsequence_ratio: float = 0.95
    min_align_ratio: float = 0.1
    min_template_length: int = 10
    min_realign_identity: float = 0.9
    max_ca_ca_distance: float = 150.0
    kalign_binary: str = "kalign"
    kalign_timeout_s: float = 30.0


class Kalign:
    """Pairwise realignment through the kalign executable (a3m/fasta in and out)."""

    def __init__(self, binary: str = "kalign", timeout_s: float = 30.0):
        path = shutil.which(binary)
        if path is None:
            raise KalignNotFoundError(
                f"kalign executable {binary!r} not found on PATH. {KALIGN_HELP}"
            )
        self.binary = path
        self.timeout_s = timeout_s

    def align(self, sequences: list[str]) -> str:
        for s in sequences:
            if len(s) < 6:  # kalign refuses shorter sequences
                raise ValueError(f"kalign needs sequences of at least 6 residues, got {s!r}")
        with tempfile.TemporaryDirectory(prefix="scalefold_kalign_") as tmp:
            src, dst = Path(tmp) / "in.fasta", Path(tmp) / "out.fasta"
            src.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(sequences)))
            proc = subprocess.run(
                [self.binary, "-i", str(src), "-o", str(dst), "-format", "fasta"],
                capture_output=True,
                timeout=self.timeout_s,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"kalign failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}"
                )
            return dst.read_text()


def _hit_pdb_chain(hit: TemplateHit) -> tuple[str, str]:
    m = re.match(r"[a-zA-Z\d]{4}_[a-zA-Z0-9.]+", hit.name)
    if m is None:
        raise TemplateSkip(f"hit name does not start with PDBID_chain: {hit.name!r}")
    pdb_id, chain = m.group(0).split("_")
    return pdb_id.lower(), chain


def query_to_hit_mapping(query: str, hit: TemplateHit) -> dict[int, int]:
    """Query residue index -> hit residue index (relative to the hit segment's first residue)."""
    if not hit.query:
        return {}
    offset = query.find(hit.query.replace("-", ""))
    if offset < 0:
        raise TemplateSkip("the hit's query segment is not part of the query sequence")
    iq = np.asarray(hit.indices_query)
    ih = np.asarray(hit.indices_hit)
    if iq.shape != ih.shape or not (iq > -1).any() or not (ih > -1).any():
        raise TemplateSkip("the hit aligns no residue pair")
    iq = np.where(iq > -1, iq - iq[iq > -1].min(), -1)
    ih = np.where(ih > -1, ih - ih[ih > -1].min(), -1)
    hit_len = len(hit.hit_sequence.replace("-", ""))
    ok = (iq != -1) & (ih != -1) & (ih < hit_len) & (iq + offset < len(query))
    return dict(zip((iq[ok] + offset).tolist(), ih[ok].tolist()))


def _find_in_structure(
    chain: str, template_seq: str, sequences: dict[str, str]
) -> tuple[str, str, int]:
    """(chain sequence, chain id, offset): exact in the named chain, exact in any chain,
    then X-as-wildcard in any chain; TemplateSkip-free SequenceNotFound via ValueError."""
    seq = sequences.get(chain)
    if seq and template_seq in seq:
        return seq, chain, seq.find(template_seq)
    for cid, seq in sequences.items():
        if seq and template_seq in seq:
            return seq, cid, seq.find(template_seq)
    pattern = re.compile("".join("." if aa == "X" else f"(?:{aa}|X)" for aa in template_seq))
    for cid, seq in sequences.items():
        m = pattern.search(seq)
        if m:
            return seq, cid, m.start()
    raise LookupError("template sequence not in structure")


@dataclass
class TemplateFeaturizer:
    """Turns the hits of one query into template arrays.

    ``release_dates`` maps PDB id -> 'YYYY-MM-DD' and ``template_chain_ids`` the chains that
    may serve as templates (both from chains.csv); ``obsolete`` is obsolete.dat's mapping.
    """

    store: MmcifDictStore
    release_dates: dict[str, str]
    template_chain_ids: set[str]
    obsolete: dict[str, str]
    config: TemplateConfig = TemplateConfig()
    kalign: Kalign | None = None
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kalign is None:
            self.kalign = Kalign(self.config.kalign_binary, self.config.kalign_timeout_s)

    def _resolve_id(self, pdb_id: str) -> str:
        if pdb_id not in self.release_dates and pdb_id in self.obsolete:
            return self.obsolete[pdb_id]
        return pdb_id

    def _acceptable(
        self, hit: TemplateHit, query: str, query_pdb_id: str | None, max_date: str
    ) -> str | None:
        """None if the hit passes the prefilter, otherwise the reason."""
        try:
            pdb_id, chain = _hit_pdb_chain(hit)
        except TemplateSkip as exc:
            return str(exc)
        pdb_id = self._resolve_id(pdb_id)
        if f"{pdb_id}_{chain}" not in self.template_chain_ids:
            return "not among template chains"
        if query_pdb_id is not None and pdb_id == query_pdb_id.lower():
            return "template is the query entry"
        if pdb_id in self.release_dates and self.release_dates[pdb_id] > max_date:
            return "released after the template cut-off"
        if hit.aligned_cols / len(query) <= self.config.min_align_ratio:
            return "aligned fraction too small"
        template_seq = hit.hit_sequence.replace("-", "")
        if (
            template_seq in query
            and len(template_seq) / len(query) > self.config.max_subsequence_ratio
        ):
            return "duplicate of the query"
        if len(template_seq) < self.config.min_template_length:
            return "template too short"
        return None

    def _realign(
        self,
        old_seq: str,
        chain: str,
        sequences: dict[str, str],
        mapping: dict[int, int],
        pdb_id: str,
    ):
        new_seq = sequences.get(chain, "")
        if not new_seq:
            if len(sequences) != 1:
                raise TemplateSkip(f"chain {chain} not in {pdb_id} for realignment")
            new_seq = next(iter(sequences.values()))
        try:
            old_aln, new_aln = parse_a3m(self.kalign.align([old_seq, new_seq])).sequences[:2]
        except (ValueError, RuntimeError, subprocess.TimeoutExpired) as exc:
            raise TemplateSkip(f"kalign realignment failed: {exc}") from exc
        a = np.frombuffer(old_aln.encode(), dtype=np.uint8)
        b = np.frombuffer(new_aln.encode(), dtype=np.uint8)
        gap = ord("-")
        ia = np.cumsum(a != gap) - 1
        ib = np.cumsum(b != gap) - 1
        both = (a != gap) & (b != gap)
        identity = int((both & (a == b)).sum()) / min(len(old_seq), len(new_seq))
        if identity < self.config.min_realign_identity:
            raise TemplateSkip(
                f"realigned identity {identity:.3f} below {self.config.min_realign_identity}"
            )
        old_to_new = dict(zip(ia[both].tolist(), ib[both].tolist()))
        return new_seq, {q: old_to_new.get(t, -1) for q, t in mapping.items()}

    def _featurize(self, hit: TemplateHit, query: str, max_date: str) -> dict[str, np.ndarray]:
        pdb_id, chain = _hit_pdb_chain(hit)
        pdb_id = self._resolve_id(pdb_id)
        mapping = query_to_hit_mapping(query, hit)
        template_seq = hit.hit_sequence.replace("-", "")
        try:
            record = self.store.get(pdb_id)
        except DataError as exc:
            raise TemplateSkip(str(exc)) from exc
        if "release_date" not in record or "sequences" not in record:
            raise TemplateSkip(f"mmcif dict of {pdb_id} lacks release_date or sequences")
        if record["release_date"] > max_date:
            raise TemplateSkip("released after the template cut-off")
        sequences = record["sequences"]
        if not sequences:
            raise TemplateSkip(f"{pdb_id} has no chains")
        try:
            seqres, chain, offset = _find_in_structure(chain, template_seq, sequences)
        except LookupError:
            seqres, mapping = self._realign(template_seq, chain, sequences, mapping, pdb_id)
            template_seq, offset = seqres, 0
        if chain not in record["atoms"]:
            raise TemplateSkip(f"no atoms for {pdb_id}_{chain}")
        positions = record["atoms"][chain]["all_atom_positions"].astype(np.float32)  # [M, 37, 3]
        mask = record["atoms"][chain]["all_atom_mask"].astype(bool)  # [M, 37]
        if mask.any():
            positions = positions.copy()
            positions[mask] -= positions[mask].mean(axis=0)
        ca = rc.atom_order["CA"]
        # Consecutive resolved CA atoms more than max_ca_ca_distance apart mean broken data.
        ca_idx = np.flatnonzero(mask[:, ca])
        if ca_idx.size > 1:
            consecutive = np.diff(ca_idx) == 1
            gaps = np.linalg.norm(np.diff(positions[ca_idx, ca], axis=0), axis=-1)
            if np.any(consecutive & (gaps > self.config.max_ca_ca_distance)):
                raise TemplateSkip(
                    f"CA-CA distance above {self.config.max_ca_ca_distance} in {pdb_id}_{chain}"
                )
        n = len(query)
        q_idx = np.fromiter(mapping.keys(), dtype=np.int64, count=len(mapping))
        t_idx = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
        valid = t_idx >= 0  # realignment maps unmatched residues to -1
        q_idx, t_idx = q_idx[valid], t_idx[valid]
        s_idx = t_idx + offset
        in_range = s_idx < positions.shape[0]
        q_idx, t_idx, s_idx = q_idx[in_range], t_idx[in_range], s_idx[in_range]
        out_pos = np.zeros((n, rc.atom_type_num, 3), dtype=np.float32)
        out_mask = np.zeros((n, rc.atom_type_num), dtype=np.float32)
        out_pos[q_idx] = positions[s_idx]
        out_mask[q_idx] = mask[s_idx]
        if out_mask.sum() < 5:  # fewer atoms than one alanine
            raise TemplateSkip(
                f"template {pdb_id}_{chain} has no resolved atoms at aligned residues"
            )
        letters = np.full(n, ord("-"), dtype=np.uint8)
        letters[q_idx] = np.frombuffer(template_seq.encode(), dtype=np.uint8)[t_idx]
        # HHblits alphabet as in the reference (U->C, B->D, ...); unaligned residues are gaps (21).
        aatype = encode_rows([letters.tobytes().decode()])[0]
        return {
            "template_aatype": aatype,
            "template_all_atom_positions": out_pos,
            "template_all_atom_mask": out_mask,
            "template_sum_probs": np.float32(hit.sum_probs),
            "template_name": f"{pdb_id}_{chain}",
        }

    def features(
        self,
        query: str,
        hits: list[TemplateHit],
        *,
        query_pdb_id: str | None,
        query_release_date: str,
        seed: int | None,
    ) -> dict[str, np.ndarray]:
        """template_aatype [T, N] int64, template_all_atom_positions [T, N, 37, 3],
        template_all_atom_mask [T, N, 37], template_sum_probs [T] and template_names (T strings); T <= max_templates."""
        cut = dt.date.fromisoformat(query_release_date) - dt.timedelta(
            days=self.config.days_before_release
        )
        max_date = cut.isoformat()
        ok = []
        for hit in hits:
            reason = self._acceptable(hit, query, query_pdb_id, max_date)
            if reason is None:
                ok.append(hit)
        ok.sort(key=lambda h: h.sum_probs, reverse=True)  # stable: ties keep file order
        k = self.config.shuffle_top_k
        if k is not None:
            top = ok[:k]
            random.Random(seed).shuffle(top)
            ok = top + ok[k:]
        feats = []
        for hit in ok:
            try:
                feats.append(self._featurize(hit, query, max_date))
            except TemplateSkip as exc:
                self.log.append(f"{hit.name}: {exc}")
            if len(feats) >= self.config.max_templates:
                break
        n = len(query)
        if not feats:
            return empty_template_features(n)
        return {
            "template_aatype": np.stack([f["template_aatype"] for f in feats]),
            "template_all_atom_positions": np.stack(
                [f["template_all_atom_positions"] for f in feats]
            ),
            "template_all_atom_mask": np.stack([f["template_all_atom_mask"] for f in feats]),
            "template_sum_probs": np.array(
                [f["template_sum_probs"] for f in feats], dtype=np.float32
            ),
            "template_names": [f["template_name"] for f in feats],
        }


def empty_template_features(n: int) -> dict[str, np.ndarray]:
    return {
        "template_aatype": np.zeros((0, n), dtype=np.int64),
        "template_all_atom_positions": np.zeros((0, n, rc.atom_type_num, 3), dtype=np.float32),
        "template_all_atom_mask": np.zeros((0, n, rc.atom_type_num), dtype=np.float32),
        "template_sum_probs": np.zeros((0,), dtype=np.float32),
        "template_names": [],
    }
