"""The template pair stack once per evaluation forward: the same bits, one run instead of
one per iteration; in training it runs every iteration; mismatching templates refused."""

from __future__ import annotations

import copy

import pytest
import torch

from scalefold.kernels.templates import (
    TemplatePairsOncePerForward,
    reuse_template_pairs,
    template_features_repeat,
)
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.utils.synthetic import synthetic_batch


def _count_stack_runs(model) -> list[int]:
    runs = [0]
    model.template_pair_stack.register_forward_hook(
        lambda *_: runs.__setitem__(0, runs[0] + 1))
    return runs


def _model_and_batch(iterations=3):
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    batch = synthetic_batch(None, n_res=14, n_clust=5, n_extra=7, n_templ=2,
                            num_iterations=iterations)
    return model, batch


def test_evaluation_forward_runs_the_stack_once_with_the_same_bits():
    plain, batch = _model_and_batch()
    fast = reuse_template_pairs(copy.deepcopy(plain))
    assert isinstance(fast, TemplatePairsOncePerForward)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    runs_plain, runs_fast = _count_stack_runs(plain), _count_stack_runs(fast)
    with torch.no_grad():
        want, got = plain(batch), fast(batch)
    assert runs_plain == [3] and runs_fast == [1]
    for key in ("final_atom_positions", "pair", "single"):
        assert torch.equal(got[key], want[key]), key
    assert fast._template_cache is None  # nothing kept past the forward
    with torch.no_grad():
        fast(batch)
    assert runs_fast == [2]  # a new forward recomputes: the weights may have changed


@pytest.mark.parametrize("mode", ["training", "gradients"])
def test_training_or_gradients_run_the_stack_every_iteration(mode):
    model, batch = _model_and_batch()
    reuse_template_pairs(model)
    runs = _count_stack_runs(model)
    if mode == "training":
        model.train()  # dropout draws new masks each iteration
        with torch.no_grad():
            model(batch)
    else:
        model(batch)
    assert runs == [3]


def test_template_features_must_repeat_over_iterations():
    _, batch = _model_and_batch()
    assert template_features_repeat(batch)
    changed = dict(batch)
    pos = batch["template_all_atom_positions"].clone()
    pos[..., -1] += 1.0  # the last iteration's templates differ
    changed["template_all_atom_positions"] = pos
    assert not template_features_repeat(changed)
    seq = batch["seq_mask"].clone()
    seq[..., 0, 1] = 0.0
    assert not template_features_repeat({**batch, "seq_mask": seq})
