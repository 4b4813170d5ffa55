"""Whole-model behaviour: recycling, determinism, gradients, activation checkpointing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.dropout import SharedDropout

from ..oracles.features import random_alphafold_features


def _batch(cfg, n_res=12, n_clust=4, n_extra=6, n_templ=2, iters=2, seed=0):
    return random_alphafold_features(
        cfg, n_res=n_res, n_clust=n_clust, n_extra=n_extra, n_templ=n_templ,
        num_iterations=iters, seed=seed,
    )


def test_output_contract_shapes():
    cfg = AlphaFoldConfig.tiny()
    torch.manual_seed(0)
    model = AlphaFold(cfg).eval()
    b = _batch(cfg, n_res=10, n_clust=3, n_extra=5, n_templ=2, iters=1)
    with torch.no_grad():
        out = model(b)
    n, s, c = 10, cfg.structure_module.num_blocks, cfg.evoformer
    expected = {
        "msa": (1, 3, n, c.c_m), "pair": (1, n, n, c.c_z), "single": (1, n, c.c_s),
        "sm_frames": (1, s, n, 4, 4), "sm_sidechain_frames": (1, s, n, 8, 4, 4),
        "sm_angles": (1, s, n, 7, 2), "sm_unnormalized_angles": (1, s, n, 7, 2),
        "sm_positions": (1, s, n, 14, 3), "sm_states": (1, s, n, c.c_s),
        "sm_single": (1, n, c.c_s), "final_atom_positions": (1, n, 37, 3),
        "final_atom_mask": (1, n, 37), "final_affine_tensor": (1, n, 4, 4),
        "distogram_logits": (1, n, n, 64), "masked_msa_logits": (1, 3, n, 23),
        "lddt_logits": (1, n, 50), "experimentally_resolved_logits": (1, n, 37),
    }
    for k, shape in expected.items():
        assert tuple(out[k].shape) == shape, k
        assert torch.isfinite(out[k]).all(), k


def test_eval_is_deterministic_and_train_mode_uses_dropout():
    cfg = AlphaFoldConfig.tiny()
    torch.manual_seed(0)
    model = AlphaFold(cfg)
    # Non-zero final layers so that dropout inside the stacks reaches the outputs.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b = _batch(cfg)
    model.eval()
    with torch.no_grad():
        a1 = model(b)["final_atom_positions"]
        a2 = model(b)["final_atom_positions"]
    assert torch.equal(a1, a2)
    model.train()
    with torch.no_grad():
        t1 = model(b)["final_atom_positions"]
    assert not torch.allclose(t1, a1)


def test_gradients_flow_through_last_recycling_iteration_only():
    cfg = AlphaFoldConfig.tiny()
    torch.manual_seed(0)
    model = AlphaFold(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b = _batch(cfg, iters=3)
    msa_feat = b["msa_feat"].clone().requires_grad_(True)
    b["msa_feat"] = msa_feat
    out = model(b)
    (out["final_atom_positions"].square().sum() + out["distogram_logits"].sum()).backward()
    g = msa_feat.grad  # [..., R]
    assert g[..., :2].abs().max() == 0.0
    assert g[..., 2].abs().max() > 0.0


def test_activation_checkpointing_gives_identical_gradients():
    cfg = AlphaFoldConfig.tiny()
    torch.manual_seed(0)
    model = AlphaFold(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b = _batch(cfg)

    def grads():
        model.zero_grad()
        out = model(b)
        (out["final_atom_positions"].square().mean() + out["lddt_logits"].mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_activation_checkpointing(True)
    recomputed = grads()
    assert plain.keys() == recomputed.keys()
    for n in plain:
        torch.testing.assert_close(recomputed[n], plain[n], rtol=1e-5, atol=1e-7, msg=n)


@pytest.mark.slow
def test_mlperf_preset_forward_backward_small_input():
    cfg = AlphaFoldConfig.mlperf()
    torch.manual_seed(0)
    model = AlphaFold(dataclasses.replace(cfg, activation_checkpointing=True)).train()
    with torch.no_grad():  # break the zero-initialised final layers' symmetry
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    # Two iterations and two templates: with one, the recycling embedder sees only zeros and
    # the template attention a single key, and their weights rightly get no gradient.
    b = _batch(cfg, n_res=8, n_clust=3, n_extra=4, n_templ=2, iters=2)
    out = model(b)
    loss = out["final_atom_positions"].square().mean() + out["distogram_logits"].mean()
    loss = loss + out["masked_msa_logits"].mean() + out["lddt_logits"].mean()
    loss = loss + out["experimentally_resolved_logits"].mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Every parameter takes part in the step: nothing is disconnected by accident.
    unused = [n for n, p in model.named_parameters() if p.grad.abs().max() == 0]
    assert not unused, unused[:10]


def test_shared_dropout_shares_mask_along_axis():
    torch.manual_seed(0)
    x = torch.ones(2, 6, 7, 8)
    rows = SharedDropout(0.5, shared_dim=-3).train()(x)
    assert torch.equal(rows[:, :1].expand_as(rows), rows)  # same mask for every row
    cols = SharedDropout(0.5, shared_dim=-2).train()(x)
    assert torch.equal(cols[:, :, :1].expand_as(cols), cols)
    assert set(rows.unique().tolist()) == {0.0, 2.0}
