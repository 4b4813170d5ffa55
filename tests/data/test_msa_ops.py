"""MSA transforms against direct (loop) definitions on small random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from scalefold.data import msa as ops
from scalefold.data.parsers import parse_a3m


def test_encode_rows_uses_our_residue_order():
    from scalefold.geometry import residue_constants as rc

    ids = ops.encode_rows(["ARX-", "BZUO"])
    assert ids[0].tolist() == [rc.restype_order["A"], rc.restype_order["R"], 20, 21]
    # HHblits aliases: B->D, Z->E, U->C, O->X
    assert ids[1].tolist() == [
        rc.restype_order["D"],
        rc.restype_order["E"],
        rc.restype_order["C"],
        20,
    ]


def test_merge_msas_dedups_across_files_keeping_first():
    a = parse_a3m(">q\nACDE\n>x\nAC-E\n>y\nACcDE\n")
    b = parse_a3m(">q\nACDE\n>z\nGCDE\n>x2\nAC-E\n")
    msa, dels = ops.merge_msas("ACDE", [a, b])
    decoded = ["".join("ARNDCQEGHILKMFPSTWYVX-"[i] for i in row) for row in msa]
    assert decoded == ["ACDE", "AC-E", "GCDE"]
    # 'ACcDE' de-duplicates against the query's aligned row; the first (query) deletions win.
    assert dels.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    q_only, d_only = ops.merge_msas("ACDE", [])
    assert q_only.shape == (1, 4) and d_only.shape == (1, 4)


def test_assign_clusters_brute_force():
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 23, size=(7, 30))
    extra = rng.integers(0, 22, size=(50, 30))
    got = ops.assign_clusters(extra, centres, chunk_rows=16)
    agree = ((extra[:, None, :] == centres[None, :, :]) & (centres[None] <= 20)).sum(-1)
    np.testing.assert_array_equal(got, agree.argmax(1))


def _agreement_argmax(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Direct definition: identical residues 0..20 counted, ties to the lowest centre."""
    agree = ((rows[:, None, :] == centres[None, :, :]) & (centres[None] <= 20)).sum(-1)
    return agree.argmax(1)


def _dense_summaries(centres, cdel, extra, edel, assign):
    """The summaries by their definition, with the pipeline's float operations: integer
    counts and float64 deletion sums, then float32."""
    c, n = centres.shape
    members = np.bincount(assign, minlength=c)
    hist = np.stack([np.eye(23, dtype=np.int64)[extra[assign == k]].sum(0) for k in range(c)])
    hist = hist.astype(np.float32)
    hist[np.arange(c)[:, None], np.arange(n)[None, :], centres] += 1.0
    counts = (1e-6 + 1.0 + members.astype(np.float32))[:, None]
    dsum = np.stack([edel[assign == k].astype(np.float64).sum(0) for k in range(c)])
    return hist / counts[:, :, None], (dsum.astype(np.float32) + cdel) / counts


def test_sparse_assignment_and_profile_are_exact_for_any_background():
    """The background only decides which cells are visited: every choice, and every
    chunking, gives the direct count's nearest centre (ties included: few classes) and
    the dense profile's bits."""
    rng = np.random.default_rng(1)
    msa = rng.integers(17, 23, size=(60, 25))  # 6 classes: many ties
    centres = rng.integers(17, 23, size=(6, 25))
    dels = np.zeros(msa.shape, np.float32)
    expect = _agreement_argmax(msa, centres)
    backgrounds = {
        "most frequent": ops.msa_profile(msa, 23).argmax(-1),
        "gap": np.full(25, ops.GAP_ID),
        "absent class": np.zeros(25, dtype=np.int64),
        "random": rng.integers(0, 23, 25),
    }
    for name, bg in backgrounds.items():
        sparse = ops.SparseMsa.of(msa, dels, bg)
        np.testing.assert_array_equal(sparse.profile(23), ops.msa_profile(msa, 23), err_msg=name)
        for chunk in (7, 60, 4096):
            got = ops.assign_sparse(sparse, centres, chunk)
            np.testing.assert_array_equal(got, expect, err_msg=f"{name}, chunk {chunk}")


def test_sparse_window_equals_sparse_form_of_the_window():
    rng = np.random.default_rng(2)
    msa = rng.integers(0, 22, size=(40, 30))
    dels = (rng.random(msa.shape) < 0.2) * rng.integers(1, 5, msa.shape).astype(np.float32)
    bg = ops.msa_profile(msa).argmax(-1)
    full = ops.SparseMsa.of(msa, dels, bg)
    np.testing.assert_array_equal(full.profile(), ops.msa_profile(msa))
    got = full.window(slice(7, 19))
    want = ops.SparseMsa.of(msa[:, 7:19], dels[:, 7:19], bg[7:19])
    for name in ("background", "offsets", "keys", "del_rows", "del_cols", "del_counts"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert getattr(got, name).dtype == getattr(want, name).dtype, name
    assert full.window(slice(0, 30)) is full
    with pytest.raises(ValueError, match="step"):
        full.window(slice(0, 30, 2))
    with pytest.raises(ValueError, match="do not match"):
        ops.SparseMsa.of(msa, dels[:, :5], bg)


def test_sparse_summaries_are_bit_identical_to_the_definition():
    """Extra rows a permuted subset of the MSA (as in an iteration: the rest after the
    centres), summaries over a column window, several backgrounds."""
    rng = np.random.default_rng(3)
    s, n, c = 80, 24, 5
    msa = rng.integers(0, 22, size=(s, n))
    msa[:, 3] = ops.GAP_ID  # a column of gaps: the background is the gap
    dels = (rng.random((s, n)) < 0.3) * rng.integers(1, 40, (s, n)).astype(np.float32)
    order = rng.permutation(s)
    sel, rest = order[:c], order[c:]
    centres, cdel = msa[sel].copy(), dels[sel]
    centres[rng.random(centres.shape) < 0.2] = ops.MASK_ID
    assign = _agreement_argmax(msa[rest], centres)
    cols = slice(2, 20)
    want = _dense_summaries(centres[:, cols], cdel[:, cols], msa[rest][:, cols],
                            dels[rest][:, cols], assign)
    for bg in (ops.msa_profile(msa).argmax(-1), rng.integers(0, 22, n)):
        window = ops.SparseMsa.of(msa, dels, bg).window(cols)
        got = ops.summarize_sparse(centres[:, cols], cdel[:, cols], window, rest, assign)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype == np.float32
            np.testing.assert_array_equal(g, w)


def test_summarize_clusters_brute_force():
    rng = np.random.default_rng(1)
    c, e, n = 4, 20, 6
    centres = rng.integers(0, 23, size=(c, n))
    extra = rng.integers(0, 22, size=(e, n))
    cdel = rng.integers(0, 3, size=(c, n)).astype(np.float32)
    edel = rng.integers(0, 3, size=(e, n)).astype(np.float32)
    assign = rng.integers(0, c, size=e)
    prof, dmean = ops.summarize_clusters(centres, cdel, extra, edel, assign)
    for k in range(c):
        members = extra[assign == k]
        count = 1e-6 + 1 + len(members)
        for r in range(n):
            expect = np.bincount(np.r_[members[:, r], centres[k, r]], minlength=23) / count
            np.testing.assert_allclose(prof[k, r], expect, rtol=1e-5)
            np.testing.assert_allclose(
                dmean[k, r], (edel[assign == k, r].sum() + cdel[k, r]) / count, rtol=1e-5
            )


def test_mask_msa_rate_and_tokens():
    rng = np.random.default_rng(2)
    msa = rng.integers(0, 22, size=(124, 200))
    profile = ops.msa_profile(msa)
    np.testing.assert_allclose(profile.sum(-1), 1.0, rtol=1e-6)
    out, bert = ops.mask_msa(msa, profile, np.random.default_rng(3), ops.MsaConfig())
    assert abs(bert.mean() - 0.15) < 0.01
    assert np.all(out[bert == 0] == msa[bert == 0])
    changed = out[bert == 1]
    assert abs((changed == ops.MASK_ID).mean() - 0.7) < 0.03  # 70% become the mask token


def test_block_delete_keeps_query():
    msa = np.arange(100)[:, None].repeat(3, 1)
    cfg = ops.MsaConfig(block_delete_msa=True)
    out, dels = ops.block_delete(msa, msa.astype(np.float32), np.random.default_rng(0), cfg)
    assert out[0, 0] == 0 and 0 < out.shape[0] < 100 and dels.shape[0] == out.shape[0]
