"""Overfitting one real structure (issue 3, section 4).

The `tiny` model, trained with Adam on the MLPerf loss (`AlphaFoldLoss(LossConfig.mlperf())`)
on a single crop of a real chain (2CVI chain A, tests/data), must memorise it: the total
loss falls by a large factor, every trained term falls, and the predicted structure's
lDDT-Cα against the deposited coordinates rises from near zero to well above what a
collapsed or random structure scores. A sign error, a wrong frame convention or a
detached term in the loss (or a model that cannot pass gradients to the structure)
fails this.

Features come from the project's own pipeline (`scalefold.data.process_chain`): the
chain's sequence as a single-row MSA (with the pipeline's BERT masking), no templates (the
one template slot is padding), a 32-residue crop, no recycling. The same feature dict is
used at every step, so the target is fixed.

Determinism: torch.manual_seed, one intra-op thread (also what keeps the run fast on a
shared 2-core machine: two OpenMP threads competing with other processes for two cores
were measured 20-60x slower per step), and dropout rates set to 0 (with dropout the lDDT
trajectory of 200-300 steps swings by +-0.1, which would force much weaker margins).

Margins, measured over torch seeds 0-3 with these settings (300 steps, lr 3e-3):
total 52-54 -> 2.5-3.6 (ratio <= 0.07); lDDT-Cα 0.029 -> 0.71-0.88. The seed fixed
below is 0, the weakest of the four.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from scalefold.data import FeatureConfig, MsaConfig, RawChain, process_chain
from scalefold.geometry import residue_constants as rc
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.metrics import lddt_ca
from scalefold.model import AlphaFold, AlphaFoldConfig

CHAIN = "2cviA"
CROP = 32
STEPS = 300
LR = 3e-3
SEED = 0
# The deposited file keeps no header, so no resolution; a value inside the pLDDT and
# experimentally-resolved losses' resolution window (0.1-3 Å) keeps those terms active.
RESOLUTION = 2.0

# Trained terms (MLPerf weight > 0) and the factor each must at least fall by.
TERM_FACTORS = {
    "fape": 0.85,
    "supervised_chi": 0.5,
    "distogram": 0.5,
    "masked_msa": 0.1,
    "plddt_loss": 0.95,
}


def _raw_chain(chain) -> RawChain:
    sequence = "".join(rc.restypes_with_x[a] for a in chain.aatype)
    n = len(sequence)
    return RawChain(
        chain_id=chain.name,
        sequence=sequence,
        all_atom_positions=chain.all_atom_positions.astype(np.float32),
        all_atom_mask=chain.all_atom_mask.astype(np.float32),
        msa=np.asarray(chain.aatype, np.int64)[None],  # the query alone
        deletion_matrix=np.zeros((1, n), np.float32),
        template_aatype=np.zeros((0, n), np.int64),
        template_all_atom_positions=np.zeros((0, n, 37, 3), np.float32),
        template_all_atom_mask=np.zeros((0, n, 37), np.float32),
        resolution=RESOLUTION,
    )


def _without_dropout(cfg: AlphaFoldConfig) -> AlphaFoldConfig:
    rep = dataclasses.replace
    return rep(
        cfg,
        template=rep(cfg.template, dropout_rate=0.0),
        extra_msa=rep(cfg.extra_msa, msa_dropout=0.0, pair_dropout=0.0),
        evoformer=rep(cfg.evoformer, msa_dropout=0.0, pair_dropout=0.0),
        structure_module=rep(cfg.structure_module, dropout_rate=0.0),
    )


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch(real_chains):
    chain = next(c for c in real_chains if c.name == CHAIN)
    config = FeatureConfig(
        mode="train", crop_size=CROP, num_recycling_iters=0, max_templates=1,
        msa=MsaConfig(max_msa_clusters=2, max_extra_msa=2),
    )
    features = process_chain(_raw_chain(chain), config, seed=0)
    return {k: v[None] for k, v in features.items()}  # batch of one, R = 1


def _evaluate(model, loss_fn, batch, last):
    model.eval()
    with torch.no_grad():
        out = model(batch)
        total, breakdown = loss_fn(out, last)
        score = lddt_ca(out["final_atom_positions"], last["all_atom_positions"],
                        last["all_atom_mask"])
    return float(total), {k: float(v) for k, v in breakdown.items()}, float(score.mean())


@pytest.mark.slow
def test_tiny_model_overfits_one_real_structure(batch, one_thread):
    last = {k: v[..., -1] for k, v in batch.items()}  # the loss takes the final iteration
    # The pipeline produced what the test claims to train on.
    assert batch["aatype"].shape == (1, CROP, 1)
    assert int(last["seq_length"]) == CROP and float(last["seq_mask"].sum()) == CROP
    assert float(last["bert_mask"].sum()) > 0  # masked-MSA targets exist
    assert float(last["template_mask"].sum()) == 0  # no templates
    assert float(last["all_atom_mask"][..., rc.atom_order["CA"]].sum()) == CROP

    torch.manual_seed(SEED)
    model = AlphaFold(_without_dropout(AlphaFoldConfig.tiny()))
    loss_fn = AlphaFoldLoss(LossConfig.mlperf())
    assert loss_fn.config.experimentally_resolved.weight == 0.0
    frozen_head = {n: p.detach().clone() for n, p in
                   model.auxiliary_heads.experimentally_resolved.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, eps=1e-6)

    total0, terms0, lddt0 = _evaluate(model, loss_fn, batch, last)
    for _ in range(STEPS):
        model.train()
        total, _ = loss_fn(model(batch), last)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    total1, terms1, lddt1 = _evaluate(model, loss_fn, batch, last)

    summary = (f"total {total0:.3f} -> {total1:.3f}, lDDT-Ca {lddt0:.3f} -> {lddt1:.3f}, "
               + ", ".join(f"{k} {terms0[k]:.3f} -> {terms1[k]:.3f}" for k in TERM_FACTORS))
    print("\n" + summary)
    assert np.isfinite([total0, total1, lddt0, lddt1]).all(), summary
    # The loss: at least a 6x drop (measured 14-20x), and every trained term falls.
    assert total1 < 0.15 * total0, summary
    for name, factor in TERM_FACTORS.items():
        assert terms1[name] < factor * terms0[name], f"{name} did not fall: {summary}"
    # The structure: from a collapsed start (lDDT-Ca ~0.03) to a fold that agrees with the
    # deposited one on most local distances (measured 0.71-0.88 over four seeds).
    assert lddt0 < 0.1, summary
    assert lddt1 > 0.5 and lddt1 - lddt0 > 0.4, summary
    # A zero-weight term (experimentally resolved, MLPerf weight 0) is reported but never
    # trained: its head gets no gradient and keeps its initial weights.
    for name, value in model.auxiliary_heads.experimentally_resolved.named_parameters():
        assert torch.equal(value.detach(), frozen_head[name]), name
