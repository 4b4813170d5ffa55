"""MSA transforms against direct (loop) definitions on small random inputs."""

from __future__ import annotations

import numpy as np

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


def test_keys_made_once_per_sample_give_the_same_assignment():
    """Keys of the whole MSA, gathered per iteration (what the feature pipeline does),
    assign rows exactly like keys made from the gathered rows."""
    rng = np.random.default_rng(1)
    msa = rng.integers(0, 23, size=(60, 25))
    centres = rng.integers(0, 23, size=(6, 25))
    rest = rng.permutation(60)[:40]
    keys = ops.cluster_keys(msa)
    assert keys.dtype == np.int32
    np.testing.assert_array_equal(ops.assign_with_keys(keys[rest], centres, 16),
                                  ops.assign_clusters(msa[rest], centres, 7))


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
