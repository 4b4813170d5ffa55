"""The evaluation path (`scalefold.train.evaluate`): padding to length buckets, in-place
weight loads, and the trainer scoring through it."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import pytest
import torch

from scalefold.bench.eval import redraw_zero_weights
from scalefold.data.features import INPUT_FEATURES
from scalefold.data.selection import ValidationSetConfig, last_iteration
from scalefold.metrics import lddt_ca
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig, TrainConfig
from scalefold.train.evaluate import (
    RESIDUE_AXIS,
    TRUTH_FEATURES,
    EvalOptions,
    Evaluator,
    NonFiniteEvaluation,
    bucket_length,
    model_inputs,
    pad_inputs,
    padded_signature,
    synthetic_chains,
    warm_up_lengths,
)
from scalefold.utils.synthetic import synthetic_batch


@pytest.fixture(scope="module")
def tiny_model() -> AlphaFold:
    """The tiny network with its zero-initialised projections re-drawn: a fresh model
    puts every atom at the origin, which no padding could disturb."""
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    assert redraw_zero_weights(list(model.parameters()), seed=1) > 0
    return model


def _chain(n: int, seed: int = 3) -> dict[str, torch.Tensor]:
    return synthetic_batch(None, n, 8, 16, 2, num_iterations=2, seed=seed)


def test_every_model_input_has_a_known_residue_axis():
    assert set(RESIDUE_AXIS) == set(INPUT_FEATURES)
    feats = _chain(13)
    for name, axis in RESIDUE_AXIS.items():
        if axis is not None:
            assert feats[name].shape[axis] == 13, name


def test_bucket_length():
    assert [bucket_length(n, 32) for n in (1, 32, 33, 700)] == [32, 32, 64, 704]
    assert bucket_length(77, 0) == 77
    with pytest.raises(ValueError, match="positive"):
        bucket_length(0, 32)
    with pytest.raises(ValueError, match="bucket"):
        bucket_length(5, -1)


def test_padding_appends_masked_zeros_and_keeps_the_chain():
    feats = model_inputs(_chain(10))
    padded = pad_inputs(feats, 16)
    for name, axis in RESIDUE_AXIS.items():
        value, out = feats[name], padded[name]
        if axis is None:
            assert out is value
            continue
        assert out.shape[axis] == 16 and out.shape[:axis] == value.shape[:axis]
        assert torch.equal(out.narrow(axis, 0, 10), value)
        assert not torch.any(out.narrow(axis, 10, 6)), name
    assert pad_inputs(feats, 10) is feats
    with pytest.raises(ValueError, match="cannot pad a chain of 10"):
        pad_inputs(feats, 9)
    with pytest.raises(KeyError, match="true_msa"):
        pad_inputs(feats | {"true_msa": torch.zeros(1, 8, 10, 2)}, 16)


def test_a_chain_padded_to_its_bucket_scores_as_unpadded(tiny_model):
    chain = _chain(21)
    exact = Evaluator(tiny_model, torch.device("cpu"))
    bucketed = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=32))
    p_exact, p_bucket = exact.predict(chain), bucketed.predict(chain)
    assert p_exact.shape == p_bucket.shape == (1, 21, 37, 3)
    assert p_exact.abs().max() > 1.0  # a real structure, not every atom at the origin
    torch.testing.assert_close(p_bucket, p_exact, atol=1e-3, rtol=0)
    s_exact, s_bucket = exact.score(chain), bucketed.score(chain)
    assert 0.0 < float(s_exact) < 1.0
    assert float(s_bucket) == pytest.approx(float(s_exact), abs=1e-6)

    # The control: padded residues left unmasked would change the real ones.
    inputs = pad_inputs(model_inputs(chain), 32)
    inputs["seq_mask"] = torch.ones_like(inputs["seq_mask"])
    with torch.inference_mode():
        leaked = tiny_model(inputs)["final_atom_positions"][:, :21]
    assert (leaked - p_exact).abs().max() > 1e-2


def test_compiled_glue_evaluates_as_eager_at_every_bucket(tiny_model):
    """`eval_compile_glue`: the evaluation copy's glue compiled once with dynamic shapes
    (aot_eager keeps the CPU test fast; the GPU runs inductor) predicts what the eager
    copy predicts, in inference mode, at three buckets, and the later buckets compile
    nothing new. The structure-module layer is compiled here too: the presets leave the
    evaluation's eager, but a compiled layer must not recompile when the geometry's
    residue tables are first used eagerly elsewhere (`warm_tables`), which this
    evaluator's eager copy and varying lengths would reveal."""
    import copy

    from scalefold.kernels import compile_glue, compile_structure_module

    compiled = copy.deepcopy(tiny_model)
    compile_glue(compiled, dynamic=True, backend="aot_eager")
    compile_structure_module(compiled, dynamic=True, backend="aot_eager")
    torch._dynamo.reset()
    eager = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=16))
    fast = Evaluator(compiled, torch.device("cpu"), EvalOptions(bucket=16))
    from torch._dynamo.utils import counters

    counters.clear()
    graphs = []
    for n in (70, 90, 100):  # buckets 80, 96, 112: none equal to a channel width
        chain = _chain(n, seed=n)
        torch.testing.assert_close(fast.predict(chain), eager.predict(chain),
                                   atol=1e-4, rtol=0)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1 and graphs[1] == graphs[0] == graphs[2], graphs


def test_warm_up_runs_each_padded_shape_once(tiny_model, monkeypatch):
    ev = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=32))
    lengths = []
    predict = Evaluator._predict
    monkeypatch.setattr(Evaluator, "_predict",
                        lambda self, feats, lane: lengths.append(feats["aatype"].shape[1])
                        or predict(self, feats, lane))
    chains = [_chain(n, seed=n) for n in (10, 20, 40)]
    timings = []
    assert ev.warm_up(chains, timings) == 2  # buckets 32 and 64
    assert lengths == [10, 40]
    assert [n for n, _ in timings] == [32, 64] and all(s > 0 for _, s in timings)


def test_weights_load_in_place(tiny_model):
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    ev = Evaluator(model, torch.device("cpu"))
    ptrs = [p.data_ptr() for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in tiny_model.parameters()])
    ev.load_flat(flat)
    assert [p.data_ptr() for p in model.parameters()] == ptrs  # graphs read these
    for a, b in zip(model.parameters(), tiny_model.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="flat weights hold"):
        ev.load_flat(flat[:-1])


def test_options_from_the_speed_config():
    assert EvalOptions.from_speed(SpeedConfig()) == EvalOptions(bucket=0, cuda_graphs=False)
    speed = SpeedConfig(eval_length_buckets="64", eval_cuda_graphs=True)
    assert EvalOptions.from_speed(speed) == EvalOptions(bucket=64, cuda_graphs=True)
    assert EvalOptions.from_speed(SpeedConfig(eval_length_buckets="16")).bucket == 16
    with pytest.raises(ValueError, match="must be one of"):
        EvalOptions.from_speed(SpeedConfig(eval_length_buckets="48"))
    with pytest.raises(ValueError, match="CUDA device"):
        Evaluator(AlphaFold(AlphaFoldConfig.tiny()), torch.device("cpu"),
                  EvalOptions(cuda_graphs=True))


def test_chains_of_a_grouped_bucket_score_as_each_alone(tiny_model, monkeypatch):
    """`eval_chains_per_forward`: chains of one bucket up to GROUP_MAX_LENGTH run two to a
    forward (padded to the bucket, stacked), the others and a bucket's last one alone;
    each chain scores as it does alone, under its own index."""
    from scalefold.train import evaluate

    monkeypatch.setattr(evaluate, "GROUP_MAX_LENGTH", 16)
    one = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=16))
    two = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=16, group=2))
    chains = [_chain(n, seed=n) for n in (9, 14, 20, 11, 17)]  # buckets 16 16 32 16 32
    forwards = [(ids, tuple(f["aatype"].shape[:2])) for ids, f in two.groups(enumerate(chains))]
    assert forwards == [([0, 1], (2, 16)), ([2], (1, 20)), ([4], (1, 17)), ([3], (1, 11))]
    _, batch = next(two.groups(enumerate(chains[:2])))
    assert set(batch) == set(RESIDUE_AXIS) | set(TRUTH_FEATURES)
    # the second chain's padding is masked in its truth, as in its inputs
    assert not batch["all_atom_mask"][1, 14:].any() and not batch["seq_mask"][1, 14:].any()
    expected = dict(one.score_chains(enumerate(chains)))
    assert len(set(expected.values())) == len(chains)  # a mix-up would show
    got = two.score_chains(enumerate(chains))
    assert [i for i, _ in got] == [0, 1, 2, 4, 3]
    for index, score in got:
        assert score == pytest.approx(expected[index], abs=1e-6)
    torch.testing.assert_close(two.predict(evaluate.stack_chains(chains[:1] * 2, 16))[1, :9],
                               one.predict(chains[0])[0], atol=1e-4, rtol=0)


def test_grouped_buckets_warm_up_their_stacked_shape(tiny_model, monkeypatch):
    ev = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=16, group=2))
    shapes = []
    predict = Evaluator._predict
    monkeypatch.setattr(Evaluator, "_predict",
                        lambda self, feats, lane: shapes.append(tuple(feats["aatype"].shape[:2]))
                        or predict(self, feats, lane))
    assert ev.warm_up_buckets(32, 4, 8, 2, 1) == 4
    assert shapes == [(1, 16), (1, 32), (2, 16), (2, 32)]


def test_chains_per_forward_need_buckets():
    assert EvalOptions.from_speed(SpeedConfig(eval_length_buckets="16",
                                              eval_chains_per_forward="4")).group == 4
    with pytest.raises(ValueError, match="needs eval_length_buckets"):
        SpeedConfig(eval_chains_per_forward="2")
    with pytest.raises(ValueError, match="needs length buckets"):
        EvalOptions(group=2)
    speed = SpeedConfig(eval_length_buckets="16", eval_chains_per_forward="2",
                        eval_plain_beside_training=True)
    assert speed.for_evaluation(trains=True).eval_chains_per_forward == "1"


def test_concurrent_chains_need_graphs_and_leave_ranks_that_train():
    speed = SpeedConfig(eval_length_buckets="16", eval_cuda_graphs=True,
                        eval_concurrent_chains="3")
    assert EvalOptions.from_speed(speed).lanes == 3
    assert EvalOptions.from_speed(SpeedConfig()).lanes == 1
    with pytest.raises(ValueError, match="eval_concurrent_chains needs eval_cuda_graphs"):
        SpeedConfig(eval_concurrent_chains="2")
    with pytest.raises(ValueError, match="lanes must be >= 1"):
        EvalOptions(lanes=0)
    # A rank that also trains evaluates plainly: one chain at a time, no graphs.
    beside = dataclasses.replace(speed, eval_plain_beside_training=True)
    assert beside.for_evaluation(trains=True).eval_concurrent_chains == "1"
    assert beside.for_evaluation(trains=False).eval_concurrent_chains == "3"


class _NaNAtLength(torch.nn.Module):
    """The tiny model, whose positions go NaN at one residue of chains of `length`
    residues (a kernel that breaks at one shape), and only there."""

    def __init__(self, model: torch.nn.Module, length: int) -> None:
        super().__init__()
        self.model, self.length = model, length

    def forward(self, feats):
        out = dict(self.model(feats))
        if feats["aatype"].shape[1] == self.length:
            pos = out["final_atom_positions"].clone()
            pos[:, 3, 1] = float("nan")  # one Cα
            out["final_atom_positions"] = pos
        return out


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_chain_whose_forward_goes_non_finite_fails_the_evaluation_by_name(tiny_model,
                                                                            lanes):
    """A NaN position fails every distance test, so lDDT alone would score the chain as
    merely wrong (a low score in the mean): the evaluation refuses it instead, naming
    the chain; the other chains' scores are unchanged."""
    chains = [_chain(n, seed=n) for n in (9, 14, 20)]
    plain = Evaluator(tiny_model, torch.device("cpu"))
    broken = Evaluator(_NaNAtLength(tiny_model, 14), torch.device("cpu"),
                       EvalOptions(lanes=lanes) if lanes > 1 else None)
    # the control: lDDT of the broken chain alone is a finite number
    with torch.inference_mode():
        pos = broken.predict(chains[1])
    assert torch.isnan(pos).any()
    truth = {k: chains[1][k][..., -1].float() for k in ("all_atom_positions",
                                                       "all_atom_mask")}
    assert torch.isfinite(lddt_ca(pos, truth["all_atom_positions"], truth["all_atom_mask"]))
    with pytest.raises(NonFiniteEvaluation, match=r"1 of 3 chains.*chain_b \(nan\)"):
        broken.score_chains(enumerate(chains), name=lambda i: "chain_" + "abc"[i])
    keep = [0, 2]
    assert broken.score_chains((i, chains[i]) for i in keep) == [
        (i, s) for i, s in plain.score_chains(enumerate(chains)) if i in keep]


def test_lanes_threads_score_every_chain_in_order_and_raise_at_join(tiny_model):
    """Several lanes on the CPU (a host thread each, no streams): the chains handed to
    the lanes' threads score as one lane scores them, in the chains' order, pass after
    pass, and a chain that fails on its lane's thread fails `join`, after which the
    evaluator scores again."""
    one = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=16))
    three = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=16, lanes=3))
    names = {lane.thread._thread_name_prefix for lane in three._lanes}
    assert names == {"eval-lane0", "eval-lane1", "eval-lane2"}
    chains = [_chain(n, seed=n) for n in (9, 14, 20, 11, 17)]
    expected = one.score_chains(enumerate(chains))
    assert len({s for _, s in expected}) == len(chains)  # a mix-up would show
    for _ in range(2):
        assert three.score_chains(enumerate(chains)) == expected
    broken = {k: v for k, v in chains[1].items() if k != "msa_feat"}
    three.queue_score(chains[0])
    three.queue_score(broken)  # lane 1's thread
    with pytest.raises(KeyError, match="msa_feat"):
        three.join()
    assert all(not lane.pending for lane in three._lanes)
    assert three.score_chains(enumerate(chains)) == expected


def test_training_ranks_of_an_asynchronous_run_hold_no_evaluation(mini_dataset, tmp_path,
                                                                   monkeypatch):
    """With evaluation ranks, a training rank never evaluates: no evaluation copy, no
    evaluator and no warm-up there (its graphs would hold memory beside the step); the
    evaluation rank has all three."""
    import scalefold.train.trainer as trainer_module
    from scalefold.train.distributed import discover
    from scalefold.train.topology import Topology
    from scalefold.train.trainer import Trainer

    root, train_ids, _ = mini_dataset
    cfg = TrainConfig(data_dir=root, output_dir=tmp_path, preset="tiny", precision="fp32",
                      crop_size=24, max_msa_clusters=6, max_extra_msa=8, max_templates=2,
                      num_recycling_iters=1, num_workers=0, train_chain_ids=train_ids,
                      val_chain_ids=("3pwp_B",), num_async_eval_ranks=1,
                      speed=SpeedConfig(eval_length_buckets="32", eval_warm_up=True))
    monkeypatch.setattr(trainer_module, "ValidationSetConfig",
                        lambda: dataclasses.replace(ValidationSetConfig(),
                                                    max_sequence_length=40))
    for rank, evaluates in ((0, False), (1, True)):
        t = Trainer(cfg, discover({}), torch.device("cpu"),
                    topology=Topology(rank=rank, world_size=2, num_eval_ranks=1))
        assert t.evaluates is evaluates
        assert (t.eval_model is not None) is evaluates and (t.evaluator is not None) is evaluates
        assert t.warm_up_evaluation() == (2 if evaluates else 0)


def test_the_trainer_evaluates_through_its_evaluator(mini_dataset, tmp_path, monkeypatch):
    from scalefold.train.distributed import discover
    from scalefold.train.trainer import Trainer

    root, train_ids, val_ids = mini_dataset
    assert "3pwp_B" in val_ids  # the shortest validation chain (100 residues): fast
    cfg = TrainConfig(data_dir=root, output_dir=tmp_path, preset="tiny", precision="fp32",
                      crop_size=24, max_msa_clusters=6, max_extra_msa=8, max_templates=2,
                      num_recycling_iters=1, num_workers=0, train_chain_ids=train_ids,
                      val_chain_ids=("3pwp_B",))
    trainer = Trainer(cfg, discover({}), torch.device("cpu"))
    assert trainer.evaluator.model is trainer.eval_model
    assert trainer.evaluator.options == EvalOptions()
    assert trainer.warm_up_evaluation() == 0  # eval_warm_up off
    bucketed = Trainer(dataclasses.replace(cfg, speed=SpeedConfig(
        eval_length_buckets="32", eval_warm_up=True)), discover({}), torch.device("cpu"))
    assert bucketed.evaluator.options == EvalOptions(bucket=32)
    # A rank that also trains, with eval_plain_beside_training (h100): no buckets, no
    # warm-up (tests/train/test_build.py: a rank that only evaluates keeps them).
    plain = Trainer(dataclasses.replace(cfg, speed=SpeedConfig(
        eval_length_buckets="32", eval_warm_up=True, eval_plain_beside_training=True)),
        discover({}), torch.device("cpu"))
    assert plain.evaluator.options == EvalOptions() and plain.warm_up_evaluation() == 0
    del plain
    # The warm-up runs every bucket up to the validation set's maximum length on
    # synthetic chains: no validation data prepared or read (check_data not called).
    import scalefold.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "ValidationSetConfig",
                        lambda: dataclasses.replace(ValidationSetConfig(),
                                                    max_sequence_length=40))
    seen = []
    warm_up = Evaluator.warm_up
    monkeypatch.setattr(Evaluator, "warm_up", lambda self, chains, *rest: seen.extend(
        c["aatype"].shape[1] for c in chains) or warm_up(self, chains, *rest))
    assert bucketed.warm_up_evaluation() == 2
    assert seen == [32, 64]
    monkeypatch.setattr(Evaluator, "warm_up", warm_up)
    del bucketed
    redraw_zero_weights(trainer.swa.shadow, seed=2)
    trainer.build_data()
    calls = []
    score_chains = Evaluator.score_chains

    def spy(self, batches, name=str):
        calls.append((batches, name))
        return score_chains(self, batches, name)

    monkeypatch.setattr(Evaluator, "score_chains", spy)
    mean = trainer.evaluate()
    assert calls == [(trainer.val_loader, trainer.val_dataset.chain_id)]
    # What the evaluation computes, written out: the SWA weights' forward at each chain's
    # own length and its lDDT-Cα, averaged over chains.
    expected = []
    with torch.no_grad():
        for _, batch in trainer.val_loader:
            out = trainer.eval_model(batch)
            last = last_iteration(batch)
            expected.append(float(lddt_ca(out["final_atom_positions"],
                                          last["all_atom_positions"],
                                          last["all_atom_mask"]).mean()))
    assert len(expected) == 1 and 0.0 < expected[0] < 1.0
    assert mean == pytest.approx(statistics.fmean(expected), abs=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_evaluation_follows_eager_and_the_weights(tiny_model):
    """One graph per bucket, replayed for every chain of that bucket, reading the weights
    loaded in place after its capture."""
    import copy

    device = torch.device("cuda")
    model = copy.deepcopy(tiny_model).to(device)
    eager = Evaluator(model, device, EvalOptions(bucket=32))
    graphed = Evaluator(model, device, EvalOptions(bucket=32, cuda_graphs=True))
    chains = [_chain(n, seed=n) for n in (21, 30)]
    for chain in chains:
        torch.testing.assert_close(graphed.predict(chain), eager.predict(chain),
                                   atol=1e-3, rtol=0)
    assert graphed.num_graphs == 1
    # New weights, loaded in place: the captured graph computes with them.
    shifted = [p.detach() * 0.9 for p in model.parameters()]
    graphed.load_weights(shifted)
    torch.testing.assert_close(graphed.predict(chains[0]), eager.predict(chains[0]),
                               atol=1e-3, rtol=0)
    scores = graphed.score_chains(enumerate(chains))
    assert [i for i, _ in scores] == [0, 1] and all(0.0 < s < 1.0 for _, s in scores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_chains_on_concurrent_lanes_score_as_one_lane(tiny_model):
    """`eval_concurrent_chains`: chain k runs on lane k mod 3, each lane a host thread
    and a stream with its own graphs, captured on a stream of the lane's; every chain's
    score is the one-lane evaluation's, bit for bit and in the chains' order, pass after
    pass (a lane's memory is never handed to the next chain before its score is read).
    Each warmed shape is captured once a lane; a shape the warm-up missed is captured on
    the caller's thread by the lane that meets it."""
    import copy

    device = torch.device("cuda")
    model = copy.deepcopy(tiny_model).to(device)
    one = Evaluator(model, device, EvalOptions(bucket=32, cuda_graphs=True))
    three = Evaluator(model, device, EvalOptions(bucket=32, cuda_graphs=True, lanes=3,
                                                 copy_stream=True))
    # buckets 32 and 64, then one of 96 that the warm-up does not see
    chains = [_chain(n, seed=n) for n in (21, 30, 40, 25, 50, 33, 12, 70)]
    assert three.warm_up(chains[:-1]) == 2 and three.num_graphs == 6
    # each lane its own stream to run on and to capture on (cuBLAS workspaces by stream)
    streams = [s for lane in three._lanes for s in (lane.stream, lane.capture)]
    assert None not in streams and len(set(streams)) == 6
    expected = one.score_chains(enumerate(chains))
    assert len({s for _, s in expected}) == len(chains)  # a mix-up would show
    for _ in range(2):
        assert three.score_chains(enumerate(chains)) == expected
    # the 70-residue chain (8th) met lane 1 in the first pass, lane (8 + 7) mod 3 = 0
    # in the second: each captured its graph of 96 residues then
    assert [len(lane.graphs) for lane in three._lanes] == [3, 3, 2]
    torch.testing.assert_close(three.predict(chains[2]), one.predict(chains[2]),
                               atol=0, rtol=0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_chains_copied_on_their_own_stream_score_the_same(tiny_model, device):
    """`input_copy_stream` for evaluation: each chain's inputs (and ground truth) copied
    on a side stream while the previous chain computes (CUDA; plain copies elsewhere):
    the same scores, bit for bit, with graphs where there are any."""
    import copy

    device = torch.device(device)
    model = copy.deepcopy(tiny_model).to(device)
    graphs = device.type == "cuda"
    plain = Evaluator(model, device, EvalOptions(bucket=32, cuda_graphs=graphs))
    side = Evaluator(model, device, EvalOptions(bucket=32, cuda_graphs=graphs,
                                                copy_stream=True))
    assert (side._copies.stream is not None) == graphs
    chains = [_chain(n, seed=n) for n in (21, 30, 40)]
    assert side.score_chains(enumerate(chains)) == plain.score_chains(enumerate(chains))
    assert EvalOptions.from_speed(SpeedConfig(input_copy_stream=True)).copy_stream


def test_warm_up_lengths_cover_every_bucket():
    assert warm_up_lengths(700, 64) == list(range(64, 705, 64))
    assert warm_up_lengths(64, 64) == [64]
    assert warm_up_lengths(65, 32) == [32, 64, 96]
    with pytest.raises(ValueError, match="buckets"):
        warm_up_lengths(700, 0)
    with pytest.raises(ValueError, match="eval_length_buckets"):
        SpeedConfig(eval_warm_up=True)


def test_synthetic_warm_up_chain_has_the_real_chains_shape(mini_dataset, tmp_path):
    """A warm-up is useful only if the real validation chain then meets the graph it
    captured: the synthetic chain of its bucket has the same padded model inputs
    (names, shapes, dtypes), at the run's MSA sizes."""
    from scalefold.train.distributed import discover
    from scalefold.train.trainer import Trainer

    root, train_ids, _ = mini_dataset
    cfg = TrainConfig(data_dir=root, output_dir=tmp_path, preset="tiny", precision="fp32",
                      num_workers=0, train_chain_ids=train_ids, val_chain_ids=("3pwp_B",))
    trainer = Trainer(cfg, discover({}), torch.device("cpu"))
    real = next(iter(trainer.check_data().validation_samples.values()))
    n = real["aatype"].shape[1]
    length = bucket_length(n, 64)
    (synthetic,) = synthetic_chains([length], cfg.max_msa_clusters, cfg.max_extra_msa,
                                    cfg.max_templates, cfg.num_recycling_iters + 1)
    assert padded_signature(model_inputs(synthetic), length) == padded_signature(
        model_inputs(real), length)
    # read before padding, the signature is the padded tensors' own (what a lane checks
    # before handing a chain to its thread, what `_replay` keys its graphs by)
    padded = pad_inputs(model_inputs(real), length)
    assert padded_signature(model_inputs(real), length) == tuple(
        (k, tuple(v.shape), v.dtype) for k, v in padded.items())


def test_template_pairs_once_scores_as_every_iteration_and_refuses_changing_templates(
        tiny_model):
    """`eval_template_pairs_once`: the evaluation copy's predictions are unchanged, and a
    chain whose template features differ between iterations is refused by name."""
    import copy

    from scalefold.kernels.templates import reuse_template_pairs

    chain = _chain(19)
    plain = Evaluator(tiny_model, torch.device("cpu"), EvalOptions(bucket=32))
    once = Evaluator(reuse_template_pairs(copy.deepcopy(tiny_model)), torch.device("cpu"),
                     EvalOptions(bucket=32))
    assert torch.equal(once.predict(chain), plain.predict(chain))
    changed = dict(chain)
    changed["template_aatype"] = chain["template_aatype"].clone()
    changed["template_aatype"][..., 0, 0, -1] = (changed["template_aatype"][..., 0, 0, -1] + 1) % 20
    with pytest.raises(ValueError, match="19-residue evaluation chain's template features"):
        once.predict(changed)
    plain.predict(changed)  # the plain copy runs every iteration's own templates


def test_template_pairs_once_only_in_the_evaluation_copy(tmp_path):
    from scalefold.kernels.templates import TemplatePairsOncePerForward
    from scalefold.train.build import build_step
    from scalefold.train.topology import Topology

    speed = SpeedConfig(eval_template_pairs_once=True)
    cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny", speed=speed)
    built = build_step(cfg, torch.device("cpu"), Topology(rank=0, world_size=1, num_eval_ranks=0))
    assert isinstance(built.eval_model, TemplatePairsOncePerForward)
    assert not isinstance(built.model, TemplatePairsOncePerForward)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_evaluation_at_the_benchmark_widths_is_finite_and_follows_fp32(monkeypatch):
    """The `h200` evaluation copy as `build_step` makes it (bf16, every evaluation kernel,
    one graph per 16-residue bucket) at the benchmark's widths and head sizes, two blocks
    of each stack (the kernels' shapes depend on widths and lengths, not depth), at
    lengths whose buckets (64, 112, 208, 288) end the attention's 64-key loop in each way
    (a full last block; partial ones of 48, 16 and 32 keys; 275 residues is the mini
    chain 3pwp_A that an H100 scored exactly 0 with the 32-key blocks): every position
    finite (a non-finite padded row spreads into the real ones through the masked sums,
    NaN · 0) and near the fp32 evaluation's from the same weights."""
    from scalefold.train import build
    from scalefold.train.build import build_step
    from scalefold.train.topology import Topology

    monkeypatch.setattr(build, "model_config", lambda cfg: AlphaFoldConfig.mlperf().with_sizes(
        num_evoformer_blocks=2, num_extra_msa_blocks=2, num_template_blocks=2))
    device = torch.device("cuda")
    lengths = (64, 100, 200, 275)
    chains = [synthetic_batch(None, n, 16, 32, 1, num_iterations=2, seed=n) for n in lengths]
    positions = {}
    for precision, speed in (("fp32", SpeedConfig()),
                             ("bf16", dataclasses.replace(SpeedConfig.preset("h200"),
                                                          eval_warm_up=False))):
        cfg = TrainConfig(data_dir=Path("."), output_dir=Path("."), precision=precision,
                          speed=speed, seed=0)
        built = build_step(cfg, device, Topology(rank=0, world_size=1, num_eval_ranks=0))
        redraw_zero_weights(list(built.eval_model.parameters()), seed=1)
        evaluator = Evaluator.from_built(built, device)
        positions[precision] = [evaluator.predict(c) for c in chains]
        del built, evaluator
        torch.cuda.empty_cache()
    for n, fast, ref in zip(lengths, positions["bf16"], positions["fp32"], strict=True):
        assert fast.shape == ref.shape and bool(torch.isfinite(fast).all()), n
        spread = (ref - ref.mean(dim=(1, 2), keepdim=True)).norm()
        # eager bf16 moved random-weight positions (spread ~700 Å) by 2-4% of their
        # spread (CPU, one block, 20 and 40 residues); a broken chain moves by all of it
        assert float((fast - ref).norm() / spread) < 0.25, n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("group, lengths, forwards", [
    (2, (90, 94, 200, 203, 150), [[0, 1], [2, 3], [4]]),
    (4, (82, 86, 90, 94, 200), [[0, 1, 2, 3], [4]]),
], ids=["two", "four"])
def test_grouped_chains_in_the_fast_evaluation_score_as_alone(monkeypatch, group, lengths,
                                                               forwards):
    """`eval_chains_per_forward` on the GPU: the `h200` evaluation copy (bf16, every
    evaluation kernel, graphs; the benchmark's widths, two blocks a stack) scores chains
    stacked two or four to a forward (buckets 96, the 32-key blocks, and 208) as it
    scores each alone: the kernels had run only batch 1 before."""
    from scalefold.train import build
    from scalefold.train.build import build_step
    from scalefold.train.topology import Topology

    monkeypatch.setattr(build, "model_config", lambda cfg: AlphaFoldConfig.mlperf().with_sizes(
        num_evoformer_blocks=2, num_extra_msa_blocks=2, num_template_blocks=2))
    device = torch.device("cuda")
    chains = [synthetic_batch(None, n, 16, 32, 1, num_iterations=2, seed=n) for n in lengths]
    speed = dataclasses.replace(SpeedConfig.preset("h200"), eval_warm_up=False)
    cfg = TrainConfig(data_dir=Path("."), output_dir=Path("."), precision="bf16",
                      speed=speed, seed=0)
    built = build_step(cfg, device, Topology(rank=0, world_size=1, num_eval_ranks=0))
    redraw_zero_weights(list(built.eval_model.parameters()), seed=1)
    alone = Evaluator(built.eval_model, device,
                      EvalOptions(bucket=16, cuda_graphs=True), built.autocast)
    grouped = Evaluator(built.eval_model, device,
                        EvalOptions(bucket=16, cuda_graphs=True, group=group), built.autocast)
    assert [ids for ids, _ in grouped.groups(enumerate(chains))] == forwards
    expected = dict(alone.score_chains(enumerate(chains)))
    for _ in range(2):  # the captured graphs replayed
        for index, score in grouped.score_chains(enumerate(chains)):
            assert score == pytest.approx(expected[index], abs=2e-3), index
