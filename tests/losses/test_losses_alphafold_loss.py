"""AlphaFoldLoss assembly: weights, sqrt(crop) scaling, FAPE clamping input, padding,
zero-weight terms, non-finite handling, dtype handling and freedom from host syncs."""

from __future__ import annotations

import math
import random

import pytest
import torch

from scalefold.losses import (
    TERM_NAMES,
    AlphaFoldLoss,
    ExperimentallyResolvedLossConfig,
    LossConfig,
    NonFiniteLossError,
    TMLossConfig,
    ViolationLossConfig,
    backbone_loss,
    check_finite_losses,
    draw_use_clamped_fape,
    use_clamped_fape_for_sample,
)

from .loss_samples import collate, make_sample

N_PAD = 30


@pytest.fixture(scope="module")
def samples(real_chains):
    # A full-length crop and a shorter chain padded to the crop size.
    return [
        make_sample(real_chains[1], 40, N_PAD, seed=1, noise=6.0),
        make_sample(real_chains[0], 3, 20, pad_to=N_PAD, seed=2),
    ]


@pytest.fixture(scope="module")
def batch_pair(samples):
    return collate(samples)


def _requires_grad(outputs: dict) -> dict:
    return {k: v.clone().requires_grad_(True) for k, v in outputs.items()}


def test_mlperf_preset_values():
    cfg = LossConfig.mlperf()
    assert cfg == LossConfig()
    assert cfg.mlperf_log_hparams() == {
        "fape_loss_weight": 1.0,
        "fape_loss_backbone_weight": 0.5,
        "fape_loss_sidechain_weight": 0.5,
        "supervised_chi_loss_weight": 1.0,
        "distogram_loss_weight": 0.3,
        "masked_msa_loss_weight": 2.0,
        "plddt_loss_weight": 0.01,
    }
    assert (cfg.fape.backbone_clamp_distance, cfg.fape.backbone_loss_unit_distance) == (10.0, 10.0)
    assert (cfg.fape.sidechain_clamp_distance, cfg.fape.sidechain_length_scale) == (10.0, 10.0)
    assert cfg.fape.eps == 1e-4
    assert (cfg.supervised_chi.chi_weight, cfg.supervised_chi.angle_norm_weight) == (0.5, 0.01)
    d = cfg.distogram
    assert (d.min_bin, d.max_bin, d.num_bins) == (2.3125, 21.6875, 64)
    p = cfg.plddt
    assert (p.cutoff, p.min_resolution, p.max_resolution, p.num_bins) == (15.0, 0.1, 3.0, 50)
    e = cfg.experimentally_resolved
    assert (e.weight, e.min_resolution, e.max_resolution) == (0.0, 0.1, 3.0)
    v = cfg.violation
    assert (v.weight, v.violation_tolerance_factor, v.clash_overlap_tolerance) == (0.0, 12.0, 1.5)
    assert not cfg.tm.enabled and cfg.use_clamped_fape_probability == 0.9
    with pytest.raises(ValueError):
        LossConfig(use_clamped_fape_probability=1.5)
    with pytest.raises(ValueError):
        ViolationLossConfig(weight=-1.0)


def test_total_is_weighted_and_sqrt_scaled(batch_pair, samples):
    outputs, batch = batch_pair
    loss = AlphaFoldLoss()
    total, breakdown = loss(outputs, batch)
    expected_keys = set(TERM_NAMES) - {"tm"} | {
        "fape_backbone",
        "fape_sidechain",
        "weighted_total_loss",
        "scaled_weighted_total_loss",
    }
    assert set(breakdown) == expected_keys
    assert all(v.dim() == 0 and not v.requires_grad for v in breakdown.values())

    cfg = loss.config
    weights = {
        "fape": 1.0,
        "supervised_chi": 1.0,
        "distogram": 0.3,
        "masked_msa": 2.0,
        "plddt_loss": 0.01,
    }
    per_sample = []
    for k in range(2):
        single_out, single_batch = collate([samples[k]])
        _, b = loss(single_out, single_batch)
        weighted = sum(w * float(b[name]) for name, w in weights.items())
        assert float(b["weighted_total_loss"]) == pytest.approx(weighted, rel=1e-6)
        n_res = float(single_batch["seq_length"][0])
        per_sample.append(math.sqrt(min(n_res, N_PAD)) * weighted)
    assert float(total) == pytest.approx(sum(per_sample) / 2, rel=1e-6)
    fape = cfg.fape.backbone_weight * float(breakdown["fape_backbone"]) + (
        cfg.fape.sidechain_weight * float(breakdown["fape_sidechain"])
    )
    assert float(breakdown["fape"]) == pytest.approx(fape, rel=1e-6)

    # A sample longer than the crop is scaled by sqrt(crop), not sqrt(length).
    long_batch = dict(batch, seq_length=torch.tensor([1000, 20]))
    long_total, _ = loss(outputs, long_batch)
    expected = (per_sample[0] + per_sample[1]) / 2
    assert float(long_total) == pytest.approx(expected, rel=1e-6)


def test_padding_does_not_change_any_term(real_chains):
    loss = AlphaFoldLoss(LossConfig(tm=TMLossConfig(enabled=True, weight=0.1)))
    plain = collate([make_sample(real_chains[0], 3, 20, seed=2)])
    padded = collate([make_sample(real_chains[0], 3, 20, pad_to=N_PAD, seed=2)])
    _, a = loss(*plain)
    _, b = loss(*padded)
    for name in a:
        if name == "scaled_weighted_total_loss":
            continue
        assert float(b[name]) == pytest.approx(float(a[name]), rel=1e-5, abs=1e-7), name


def test_use_clamped_fape_input(batch_pair):
    outputs, batch = batch_pair
    loss = AlphaFoldLoss()

    def bb(u):
        return backbone_loss(
            batch["backbone_rigid_tensor"],
            batch["backbone_rigid_mask"],
            outputs["sm_frames"],
            use_clamped_fape=u,
        )

    clamped, unclamped = bb(True), bb(False)
    assert torch.all(unclamped > clamped)  # this input has errors beyond 10 Å
    mixed = bb(torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(mixed, torch.stack([clamped[0], unclamped[1]]), rtol=1e-6, atol=0)
    torch.testing.assert_close(bb(None), clamped)

    def fape_backbone(**kwargs):
        return float(loss(outputs, kwargs.pop("b", batch), **kwargs)[1]["fape_backbone"])

    assert fape_backbone() == pytest.approx(float(clamped.mean()), rel=1e-6)
    assert fape_backbone(use_clamped_fape=False) == pytest.approx(float(unclamped.mean()), rel=1e-6)
    assert fape_backbone(use_clamped_fape=torch.tensor([1.0, 0.0])) == pytest.approx(
        float(mixed.mean()), rel=1e-6
    )
    # Without an explicit argument the batch's own flag is used (the reference's path).
    with_flag = dict(batch, use_clamped_fape=torch.tensor([0.0, 0.0]))
    assert fape_backbone(b=with_flag) == pytest.approx(float(unclamped.mean()), rel=1e-6)


def test_use_clamped_fape_draws():
    # The reference: random.Random(seed).uniform(0, 1) < p, per sample.
    for seed in (0, 1, 12345):
        assert use_clamped_fape_for_sample(seed) == float(random.Random(seed).uniform(0, 1) < 0.9)
    rate = sum(use_clamped_fape_for_sample(s) for s in range(4000)) / 4000
    assert abs(rate - 0.9) < 0.02
    gen = torch.Generator().manual_seed(0)
    draws = draw_use_clamped_fape(4000, 0.9, gen)
    assert draws.dtype == torch.float32 and set(draws.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(draws.mean()) - 0.9) < 0.02
    again = draw_use_clamped_fape(4000, 0.9, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_zero_weight_terms_stay_out_of_the_graph(batch_pair):
    outputs, batch = batch_pair
    outputs = _requires_grad(outputs)
    total, breakdown = AlphaFoldLoss()(outputs, batch)
    assert float(breakdown["violation"]) > 0 and float(breakdown["experimentally_resolved"]) > 0
    grads = torch.autograd.grad(
        total,
        [outputs["experimentally_resolved_logits"], outputs["lddt_logits"]],
        allow_unused=True,
    )
    assert grads[0] is None and grads[1] is not None

    # Skipping the zero-weight terms changes the breakdown, not the total.
    lean_total, lean = AlphaFoldLoss(LossConfig(compute_zero_weight_terms=False))(outputs, batch)
    assert "violation" not in lean and "experimentally_resolved" not in lean
    assert float(lean_total.detach()) == pytest.approx(float(total.detach()), rel=1e-7)

    cfg = LossConfig(
        experimentally_resolved=ExperimentallyResolvedLossConfig(weight=0.01),
        violation=ViolationLossConfig(weight=1.0),
    )
    total2, breakdown2 = AlphaFoldLoss(cfg)(outputs, batch)
    (g,) = torch.autograd.grad(total2, [outputs["experimentally_resolved_logits"]])
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    expected = (
        float(breakdown["weighted_total_loss"])
        + 0.01 * float(breakdown["experimentally_resolved"])
        + float(breakdown["violation"])
    )
    assert float(breakdown2["weighted_total_loss"]) == pytest.approx(expected, rel=1e-6)


def test_non_finite_terms(batch_pair):
    outputs, batch = batch_pair
    bad = dict(outputs, lddt_logits=outputs["lddt_logits"].clone())
    bad["lddt_logits"][0, 0, 0] = float("nan")
    total, breakdown = AlphaFoldLoss()(bad, batch)
    assert not torch.isfinite(total)
    with pytest.raises(NonFiniteLossError, match="plddt_loss") as info:
        check_finite_losses(breakdown)
    assert "plddt_loss" in info.value.terms and "distogram" not in info.value.terms
    check_finite_losses(AlphaFoldLoss()(outputs, batch)[1])

    # The reference's behaviour, on request: a non-finite weighted term counts as 0.
    cfg = LossConfig(zero_nonfinite_terms=True)
    zeroed, zb = AlphaFoldLoss(cfg)(bad, batch)
    _, clean = AlphaFoldLoss()(outputs, batch)
    assert torch.isfinite(zeroed)
    expected = float(clean["weighted_total_loss"]) - 0.01 * float(clean["plddt_loss"])
    assert float(zb["weighted_total_loss"]) == pytest.approx(expected, rel=1e-6)


def test_reduced_precision_outputs_are_promoted(batch_pair):
    outputs, batch = batch_pair
    half = {k: v.to(torch.bfloat16) for k, v in outputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, breakdown = AlphaFoldLoss()(half, batch)
    assert total.dtype == torch.float32
    reference, _ = AlphaFoldLoss()({k: v.float() for k, v in half.items()}, batch)
    assert float(total) == pytest.approx(float(reference), rel=1e-6)


def test_no_host_synchronisation(batch_pair):
    """On the meta device every data-dependent host read (.item(), nonzero, masked
    indexing, Python control flow on values) raises: the loss must not contain any."""
    outputs, batch = batch_pair
    cfg = LossConfig(tm=TMLossConfig(enabled=True, weight=0.1), zero_nonfinite_terms=True)
    loss = AlphaFoldLoss(cfg).to("meta")
    meta_out = {k: v.to("meta").requires_grad_(True) for k, v in outputs.items()}
    meta_batch = {k: v.to("meta") for k, v in batch.items()}
    total, breakdown = loss(meta_out, meta_batch, use_clamped_fape=torch.ones(2, device="meta"))
    total.backward()
    assert total.device.type == "meta" and meta_out["sm_frames"].grad is not None
    assert all(v.device.type == "meta" for v in breakdown.values())
