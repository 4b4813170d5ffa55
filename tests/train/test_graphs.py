"""CUDA-graph capture of the whole training step (GPU only; skipped on the CPU).

The state handling around capture (`preserved_training_state`) and the fused update path
it needs are tested on the CPU in test_step.py.
"""

from __future__ import annotations

import pytest
import torch

from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.graphs import GraphedTrainStep
from scalefold.train.step import TrainStep, make_adam
from scalefold.train.swa import WeightEMA
from scalefold.utils.synthetic import synthetic_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _build(bf16: bool = False, single_pass: bool = False):
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).to(device).train()
    params = list(model.parameters())
    opt = make_adam(params, 1e-3, device, fused=True, capturable=True)
    ema = WeightEMA(model, decay=0.9)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)

    update = None
    if single_pass:
        from scalefold.kernels.optimizer import SinglePassUpdate

        update = SinglePassUpdate(params, opt, ema, model, 0.1)
    step = TrainStep(model, params, opt, AlphaFoldLoss(LossConfig.mlperf()).to(device), ema,
                     model, max_grad_norm=0.1, fused=True, autocast=autocast,
                     single_pass=update)
    return model, step


def _batches():
    cfg = AlphaFoldConfig.tiny()
    return [synthetic_batch(cfg, 24, 8, 16, 2, num_iterations=n + 1, seed=n, device="cuda")
            for n in (1, 0, 2, 1)]


@pytest.mark.parametrize("single_pass", [False, True], ids=["multi_tensor", "single_pass"])
def test_graphed_steps_match_eager_steps(single_pass):
    """The graphed steps follow the eager ones to rounding (with the single-pass update
    too: its gradient tables are each graph's own, written after its capture)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    batches = _batches()
    uc = torch.ones(1, device="cuda")
    eager_model, eager = _build(single_pass=single_pass)
    graph_model, step = _build(single_pass=single_pass)
    assert (step.single_pass is not None) == single_pass
    graphed = GraphedTrainStep(step)
    graphed.capture([(b, uc) for b in batches])
    assert len(graphed.signatures) == 3  # recycling counts 1, 0, 2
    assert all(len(graphed._graphs[s][0]) == 1 for s in graphed.signatures)  # not split
    # Capture (3 warm-up steps per graph) left the weights, Adam and the EMA untouched.
    for p, q in zip(graph_model.parameters(), eager_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert step.ema.num_updates == 0
    norm_rtol, weight_atol = 1e-5, 1e-6
    for i, b in enumerate(batches):
        torch.manual_seed(10 + i)  # dropout is on: the same masks in both
        a = eager(b, uc)
        torch.manual_seed(10 + i)
        g = graphed(b, uc)
        torch.testing.assert_close(g.loss, a.loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g.grad_norm, a.grad_norm, rtol=norm_rtol, atol=1e-6)
    for p, q in zip(graph_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=weight_atol)
    for s, t in zip(step.ema.shadow, eager.ema.shadow, strict=True):
        torch.testing.assert_close(s, t, rtol=1e-4, atol=weight_atol)
    assert step.ema.num_updates == eager.ema.num_updates == len(batches)


def test_graph_replays_follow_the_seed_and_the_lr():
    from scalefold.train.step import set_lr

    b = _batches()[1]
    uc = torch.ones(1, device="cuda")
    model, step = _build(bf16=True)
    graphed = GraphedTrainStep(step)
    graphed.capture([(b, uc)])
    start = [p.detach().clone() for p in model.parameters()]

    def loss_at(seed):
        torch.manual_seed(seed)
        return float(graphed(b, uc).loss)

    first = loss_at(1)
    with torch.no_grad():
        for p, s in zip(model.parameters(), start, strict=True):
            p.copy_(s)
    assert loss_at(1) == first  # the same seed, the same dropout masks
    assert loss_at(2) != first  # dropout is live inside the graph
    # lr 0: Adam must leave the weights alone (the lr is read at replay, not at capture).
    set_lr(step.optimizer, 0.0)
    before = [p.detach().clone() for p in model.parameters()]
    loss_at(3)
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_unknown_shape_is_a_clear_error():
    b = _batches()[1]
    uc = torch.ones(1, device="cuda")
    _, step = _build()
    graphed = GraphedTrainStep(step)
    with pytest.raises(KeyError, match="no CUDA graph captured"):
        graphed(b, uc)


def _synced_graphs_match_eager(sync, graphs_per_signature: int,
                               single_pass: bool = False) -> GraphedTrainStep:
    """The graphed step with a gradient sync on it follows the eager step without one."""
    torch.backends.cuda.matmul.allow_tf32 = False
    batches = _batches()
    uc = torch.ones(1, device="cuda")
    eager_model, eager = _build(single_pass=single_pass)
    graph_model, step = _build(single_pass=single_pass)
    step.grad_sync = sync
    graphed = GraphedTrainStep(step)
    graphed.capture([(b, uc) for b in batches])
    assert all(len(graphed._graphs[s][0]) == graphs_per_signature
               for s in graphed.signatures)
    for i, b in enumerate(batches):
        torch.manual_seed(10 + i)
        a = eager(b, uc)
        torch.manual_seed(10 + i)
        g = graphed(b, uc)
        torch.testing.assert_close(g.loss, a.loss, rtol=1e-5, atol=1e-6)
    for p, q in zip(graph_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    return graphed


@pytest.mark.parametrize("single_pass", [False, True], ids=["multi_tensor", "single_pass"])
def test_split_graphs_with_flat_grad_sync_match_eager(single_pass):
    """The layout used with several data-parallel ranks: forward+backward and the update
    as two graphs, the (here single-rank) flat all-reduce between them; the single-pass
    update reads the gradients where the flat buffer holds them."""
    from scalefold.train.grad_sync import FlatGradSync

    _synced_graphs_match_eager(FlatGradSync(), graphs_per_signature=2,
                               single_pass=single_pass)


def _bucketed_graph_matches_eager() -> None:
    from scalefold.train.grad_sync import BucketedGradSync

    sync = BucketedGradSync(bucket_bytes=64 * 1024)
    _synced_graphs_match_eager(sync, graphs_per_signature=1)  # the step stays one graph
    assert len(sync.buckets) > 3


def test_one_graph_with_bucketed_grad_sync_matches_eager():
    """Buckets copied into the flat buffer from inside the captured backward (no process
    group: no collective)."""
    _bucketed_graph_matches_eager()


def test_bucketed_all_reduces_captured_over_nccl(tmp_path):
    """The same with an NCCL process group of one: each bucket's all-reduce is launched
    from the captured backward and replayed with the graph (what several ranks run)."""
    import torch.distributed as dist

    if not dist.is_nccl_available():
        pytest.skip("needs NCCL")
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1, device_id=torch.device("cuda", 0))
    try:
        _bucketed_graph_matches_eager()
    finally:
        dist.destroy_process_group()
