"""Our parsers against AlphaFold's (alphafold-colabfold) on the same texts."""

from __future__ import annotations

import numpy as np
import pytest

from scalefold.data import parsers

af = pytest.importorskip("alphafold.data.parsers")

A3M = """>query
MKTAYIAKQR
>hit1 desc
MK-AYaaIAKQR
>hit2
-KTAYIAKQRqq
>hit3
mMKTcAYIAK--

>hit4
MKTAYIAKQR
"""

STO = """# STOCKHOLM 1.0
#=GF ID test
query  MK-TAY..IAKQR
hit1   MKLTAYaaIAK-R
hit2   -K-TAYg-I-KQR

query  AA
hit1   A-
hit2   -A
//
"""

HHR = """Query         1abc_A
Match_columns 12

 No Hit                             Prob E-value P-value  Score    SS Cols Query HMM  Template HMM
  1 2xyz_B some protein            99.9 1.2E-30 1E-34  180.0   0.0   10    1-10      3-12 (20)

No 1
>2xyz_B some protein; chain B
Probab=99.90  E-value=1.2e-30  Score=180.00  Aligned_cols=10  Identities=80%  Similarity=1.2  Sum_probs=9.5  Template_Neff=4.1

Q ss_pred             CCCCCCCC
Q 1abc_A            1 MKTAY-IAKQ    9 (12)
Q Consensus       1 ~~~~~~~~~~    9 (12)
                    |||||
T Consensus       3 ~~~~~~~~~~   12 (20)
T 2xyz_B          3 MKTAYLIA-Q   11 (20)
T ss_dssp           CCCCCCCC
T ss_pred             CCCCCCCC

Q 1abc_A           10 RS-G   12 (12)
T 2xyz_B           12 RSAG   15 (20)

No 2
>3def_A other
Probab=50.00  E-value=2  Score=10.00  Aligned_cols=4  Identities=25%  Similarity=0.1  Sum_probs=2.0  Template_Neff=1.0

Q 1abc_A            5 YIAK    8 (12)
T 3def_A            1 WIAR    4 (9)
"""


def test_a3m_matches_alphafold():
    ours, ref = parsers.parse_a3m(A3M), af.parse_a3m(A3M)
    assert ours.sequences == list(ref.sequences)
    assert ours.descriptions == list(ref.descriptions)
    np.testing.assert_array_equal(ours.deletion_matrix, np.asarray(ref.deletion_matrix))
    assert ours.deletion_matrix[1].tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 0]


def test_a3m_deletions_match_alphafold_on_random_files():
    """Inserts before the first column, between columns, after the last (not counted),
    runs of them, rows wrapped over several lines."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        cols = int(rng.integers(1, 12))
        lines = []
        for r in range(int(rng.integers(1, 8))):
            row = ""
            for _ in range(cols):
                row += "".join(rng.choice(list("acdwy"), int(rng.integers(0, 4)) * (rng.random() < 0.3)))
                row += str(rng.choice(list("ACDEFGHIKLMNPQRSTVWYX-")))
            row += "".join(rng.choice(list("kq"), int(rng.integers(0, 3))))
            cut = int(rng.integers(0, len(row) + 1))
            lines.append(f">row{r}\n{row[:cut]}\n{row[cut:]}\n")
        text = "".join(lines)
        ours, ref = parsers.parse_a3m(text), af.parse_a3m(text)
        assert ours.sequences == list(ref.sequences), text
        np.testing.assert_array_equal(ours.deletion_matrix, np.asarray(ref.deletion_matrix),
                                      err_msg=text)


def test_a3m_rejects_ragged_rows():
    with pytest.raises(ValueError, match="row 1"):
        parsers.parse_a3m(">q\nACD\n>h\nAC\n")


def test_stockholm_matches_alphafold():
    ours, ref = parsers.parse_stockholm(STO), af.parse_stockholm(STO)
    assert ours.sequences == list(ref.sequences)
    assert ours.descriptions == list(ref.descriptions)
    np.testing.assert_array_equal(ours.deletion_matrix, np.asarray(ref.deletion_matrix))


def _compare_hits(text):
    ours, ref = parsers.parse_hhr(text), af.parse_hhr(text)
    assert len(ours) == len(ref) > 0
    for a, b in zip(ours, ref):
        assert (a.index, a.name, a.aligned_cols, a.query, a.hit_sequence) == (
            b.index, b.name, b.aligned_cols, b.query, b.hit_sequence)  # fmt: skip
        assert a.sum_probs == pytest.approx(b.sum_probs)
        assert list(a.indices_query) == list(b.indices_query)
        assert list(a.indices_hit) == list(b.indices_hit)


def test_hhr_matches_alphafold():
    _compare_hits(HHR)


def test_hhr_of_mini_dataset_matches_alphafold(mini_layout):
    from scalefold.data.layout import AlignmentDB

    db = AlignmentDB(mini_layout.alignments_dir)
    texts = [db.read(c)["pdb70_hits.hhr"] for c in ("3pwp_A", "3kpr_B", "3pwp_E")]
    assert any("No 1" in t for t in texts)
    for text in texts:
        if "No 1" in text:
            _compare_hits(text)
    a3m = db.read("3kpr_A")["bfd_uniclust_hits.a3m"]
    ours, ref = parsers.parse_a3m(a3m), af.parse_a3m(a3m)
    assert ours.sequences == list(ref.sequences)
    np.testing.assert_array_equal(ours.deletion_matrix, np.asarray(ref.deletion_matrix))
    assert ours.deletion_matrix.sum() > 0  # the synthetic rows do carry insertions
