"""Flat parameters: the model's storage moved into one buffer, the same training."""

from __future__ import annotations

import pytest
import torch

from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.flat_params import ALIGN, FlatParameters
from scalefold.train.step import FlatGradSync, TrainStep, make_adam
from scalefold.train.swa import WeightEMA
from scalefold.utils.synthetic import synthetic_batch


def _build(fused: bool, flat: bool, seed: int = 0):
    torch.manual_seed(seed)
    model = AlphaFold(AlphaFoldConfig.tiny()).train()
    fp = FlatParameters(list(model.parameters())) if flat else None
    params = [fp.param] if fp else list(model.parameters())
    opt = make_adam(params, 1e-3, torch.device("cpu"), fused=fused)
    ema = WeightEMA(model, decay=0.9, flat=fp)
    sync = FlatGradSync(flat=fp.grad, between_graphs=False) if fp else None
    step = TrainStep(model, params, opt, AlphaFoldLoss(LossConfig.mlperf()), ema, model,
                     max_grad_norm=0.1, fused=fused, grad_sync=sync)
    return model, step, fp


@pytest.fixture(scope="module")
def batches():
    cfg = AlphaFoldConfig.tiny()
    return [synthetic_batch(cfg, 16, 8, 16, 2, num_iterations=n + 1, seed=n)
            for n in (1, 0, 1, 0)]


def test_views_keep_values_objects_and_alignment():
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    objects = [id(p) for p in model.parameters()]
    fp = FlatParameters(list(model.parameters()))
    assert [id(p) for p in model.parameters()] == objects  # the same Parameters
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    fp.check_attached()
    base, size = fp.param.data_ptr(), fp.param.element_size()
    for p in model.parameters():
        assert (p.data_ptr() - base) % (ALIGN * size) == 0 and p.is_contiguous()
        assert p.grad is not None and not p.grad.any()
    assert fp.param.numel() >= sum(p.numel() for p in model.parameters())
    # Writing through the flat buffer is writing the model's weights, and back.
    with torch.no_grad():
        fp.param.add_(1.0)
    name, p = next(iter(model.named_parameters()))
    assert torch.equal(p, before[name] + 1.0)
    # Something that replaces a gradient breaks the link, and is named.
    p.grad = None
    with pytest.raises(RuntimeError, match="gradient of parameter 0"):
        fp.check_attached()


def test_bad_parameter_lists_are_refused():
    a = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="at least one"):
        FlatParameters([])
    with pytest.raises(ValueError, match="twice"):
        FlatParameters([a, a])
    with pytest.raises(ValueError, match="one dtype"):
        FlatParameters([a, torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))])
    with pytest.raises(ValueError, match="require a gradient"):
        FlatParameters([a, torch.nn.Parameter(torch.zeros(2), requires_grad=False)])


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
def test_flat_training_matches_per_parameter_training(batches, fused):
    """Adam, the clip and the EMA over one tensor: the same weights, moments and SWA
    weights after four steps, to rounding (the norm's summation order differs)."""
    ref_model, ref, _ = _build(fused, flat=False)
    model, step, fp = _build(fused, flat=True)
    uc = torch.ones(1)
    for i, b in enumerate(batches):
        torch.manual_seed(100 + i)
        a = ref(b, uc)
        torch.manual_seed(100 + i)
        f = step(b, uc)
        torch.testing.assert_close(a.loss, f.loss, rtol=1e-5, atol=1e-6)
        # One reduction over the whole buffer instead of per-tensor norms: the CPU's
        # fp32 sum order differs by a few 1e-6 relative.
        torch.testing.assert_close(a.grad_norm, f.grad_norm, rtol=1e-4, atol=1e-7)
    fp.check_attached()  # the step never replaced a gradient
    # That rounding reaches the weights through Adam's normalised steps: within 1% of
    # one step (lr 1e-3) after four (measured: 3e-6 at most).
    for (n, p), q in zip(ref_model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=n)
    for s, t in zip(ref.ema.shadow, step.ema.shadow, strict=True):
        torch.testing.assert_close(t, s, rtol=1e-4, atol=1e-5)
    assert step.ema.num_updates == ref.ema.num_updates == len(batches)
    # The checkpoint form: per parameter, as the reference optimizer writes it.
    per = fp.to_per_param_state(step.optimizer.state_dict())
    ref_state = ref.optimizer.state_dict()
    assert per["param_groups"][0]["params"] == ref_state["param_groups"][0]["params"]
    for k in ("exp_avg", "exp_avg_sq"):
        got = [per["state"][i][k] for i in ref_state["state"]]
        want = [entry[k] for entry in ref_state["state"].values()]
        assert [g.shape for g in got] == [w.shape for w in want]
        got, want = torch.cat([g.flatten() for g in got]), torch.cat([w.flatten() for w in want])
        assert (got - want).norm() <= 1e-3 * want.norm(), k
    for i, entry in ref_state["state"].items():
        assert float(per["state"][i]["step"]) == float(entry["step"]) == len(batches)
    # Parameters that never get a gradient (the experimentally resolved head) are left
    # exactly as they were, as per-parameter Adam leaves them.
    unused = [i for i in range(len(fp.params)) if i not in ref_state["state"]]
    assert unused
    for i in unused:
        assert not per["state"][i]["exp_avg"].any()


def test_per_parameter_state_loads_into_flat_and_training_continues_the_same(batches):
    """A per-parameter checkpoint (a run without flat parameters, or the reference's)
    resumed with flat parameters: the next steps equal the run that kept going."""
    uc = torch.ones(1)
    ref_model, ref, _ = _build(True, flat=False)
    for i, b in enumerate(batches[:2]):
        torch.manual_seed(100 + i)
        ref(b, uc)
    model, step, fp = _build(True, flat=True, seed=1)  # other weights, overwritten below
    model.load_state_dict(ref_model.state_dict())
    step.optimizer.load_state_dict(fp.from_per_param_state(ref.optimizer.state_dict()))
    step.ema.load_state_dict(ref.ema.state_dict())
    # The round trip is exact.
    back = fp.to_per_param_state(step.optimizer.state_dict())
    for i, entry in ref.optimizer.state_dict()["state"].items():
        assert torch.equal(back["state"][i]["exp_avg_sq"], entry["exp_avg_sq"])
    for i, b in enumerate(batches[2:], start=2):
        torch.manual_seed(100 + i)
        a = ref(b, uc)
        torch.manual_seed(100 + i)
        f = step(b, uc)
        torch.testing.assert_close(a.loss, f.loss, rtol=1e-5, atol=1e-6)
    for p, q in zip(ref_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)


def test_per_parameter_state_that_cannot_be_flat_is_refused():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2, 2))]
    fp = FlatParameters(params)
    group = {"lr": 1e-3, "params": [0, 1]}

    def entry(shape, step):
        return {"step": torch.tensor(float(step)), "exp_avg": torch.zeros(shape),
                "exp_avg_sq": torch.zeros(shape)}

    with pytest.raises(ValueError, match="one Adam step count"):
        fp.from_per_param_state({"state": {0: entry((3,), 2), 1: entry((2, 2), 3)},
                                 "param_groups": [group]})
    with pytest.raises(ValueError, match="'exp_avg' of parameter 1 has shape"):
        fp.from_per_param_state({"state": {1: entry((4,), 2)}, "param_groups": [group]})
    with pytest.raises(ValueError, match="one group over the model's 2"):
        fp.from_per_param_state({"state": {}, "param_groups": [{**group, "params": [0]}]})
    with pytest.raises(ValueError, match="flat parameter alone"):
        fp.to_per_param_state({"state": {}, "param_groups": [group]})
    # A parameter without state (never updated) starts from zero moments.
    flat = fp.from_per_param_state({"state": {1: entry((2, 2), 5)}, "param_groups": [group]})
    assert float(flat["state"][0]["step"]) == 5 and not flat["state"][0]["exp_avg"].any()


def test_flat_ema_refuses_another_models_parameters():
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny())
    other = AlphaFold(AlphaFoldConfig.tiny())
    fp = FlatParameters(list(other.parameters()))
    with pytest.raises(ValueError, match="not this model's"):
        WeightEMA(model, 0.9, flat=fp)
