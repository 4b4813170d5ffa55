"""The training loop on the mini dataset: exact resume, events, and the MLPerf log."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from scalefold.train.config import TrainConfig
from scalefold.train.distributed import discover
from scalefold.train.trainer import Trainer


def _config(mini_dataset, out: Path, **kw) -> TrainConfig:
    root, train_ids, val_ids = mini_dataset
    base = dict(
        data_dir=root, output_dir=out, preset="tiny", precision="fp32", crop_size=24,
        max_msa_clusters=6, max_extra_msa=8, max_templates=2, num_recycling_iters=1,
        num_train_iters=6, val_every_iters=100, checkpoint_every_iters=2,
        keep_last_checkpoints=5, num_workers=0, train_chain_ids=train_ids,
        val_chain_ids=("3pwp_C",), progress=False, seed=7,  # a 9-residue peptide: cheap
    )
    base.update(kw)
    return TrainConfig(**base)


def _trainer(cfg: TrainConfig, events=None) -> Trainer:
    t = Trainer(cfg, discover({}), torch.device("cpu"), on_event=events)
    t.maybe_resume()
    t.build_data()
    return t


def test_resume_continues_exactly(mini_dataset, tmp_path):
    # Uninterrupted: 6 steps.
    straight = _trainer(_config(mini_dataset, tmp_path / "a"))
    straight.run()
    assert straight.iteration == 6
    # Interrupted after 4 steps (a checkpoint every 2), then resumed in a new trainer.
    cfg_b = _config(mini_dataset, tmp_path / "b")
    first = _trainer(cfg_b)
    first.run(stop_after=4)
    first.close()  # the background write is on disk
    assert first.iteration == 4
    del first
    resumed = _trainer(dataclasses.replace(cfg_b, resume="latest"))
    assert resumed.iteration == 4
    resumed.run()
    assert resumed.iteration == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for sa, sb in zip(straight.swa.shadow, resumed.swa.shadow, strict=True):
        assert torch.equal(sa, sb)
    # Without --resume the same directory is refused: no run continues another by accident.
    from scalefold.train.rundir import RunDirectoryError

    with pytest.raises(RunDirectoryError, match="pass --resume"):
        _trainer(cfg_b)
    # The parameters did move: the comparison is not between two untouched models.
    fresh = Trainer(cfg_b, discover({}), torch.device("cpu")).model.state_dict()
    assert any(not torch.equal(fresh[n], a[n]) for n in a)


def test_events_and_evaluation_cycle(mini_dataset, tmp_path):
    events = []
    cfg = _config(mini_dataset, tmp_path / "c", num_train_iters=4, val_every_iters=2,
                  resume=None)
    t = _trainer(cfg, events=lambda name, data: events.append((name, data)))
    result = t.run()
    names = [n for n, _ in events if n != "step"]
    assert names == ["cycle_start", "cycle_stop", "eval_start", "eval_accuracy", "eval_stop"] * 2
    samples = [d["epoch_num"] for n, d in events if n == "eval_accuracy"]
    assert samples == [2, 4]  # training samples seen (global batch 1)
    assert [it for it, _ in result.evaluations] == [2, 4]
    assert all(0.0 <= acc <= 1.0 for _, acc in result.evaluations)
    # each step says how long the host took to launch it, by part
    steps = [d["step"] for n, d in events if n == "step"]
    assert len(steps) == 4
    for s in steps:
        assert set(s.launch_s) == {"copies", "step", "results"}
        assert all(v >= 0.0 for v in s.launch_s.values())
        assert s.launch_s["step"] > 0.0  # the CPU step runs inside it


def test_target_stops_the_run(mini_dataset, tmp_path):
    cfg = _config(mini_dataset, tmp_path / "d", num_train_iters=10, val_every_iters=2,
                  target_avg_lddt_ca=0.0, resume=None)
    result = _trainer(cfg).run()
    assert result.reached_target and result.iterations == 2


def test_nan_loss_is_reported_by_name(mini_dataset, tmp_path):
    cfg = _config(mini_dataset, tmp_path / "e", resume=None)
    t = _trainer(cfg)
    with torch.no_grad():
        t.model.auxiliary_heads.distogram.linear.bias.fill_(float("nan"))
    from scalefold.losses import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="distogram"):
        t.run()


def test_config_rejects_nonsense(tmp_path):
    with pytest.raises(ValueError):
        TrainConfig(data_dir=tmp_path, output_dir=tmp_path, val_every_iters=0)
    cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path)
    assert dataclasses.replace(cfg, seed=3).seed == 3


def test_bf16_steps_keep_structure_module_in_fp32(mini_dataset, tmp_path):
    cfg = _config(mini_dataset, tmp_path / "f", precision="bf16", num_train_iters=2,
                  val_every_iters=2, resume=None)
    t = _trainer(cfg)
    seen = {}

    def record(mod, args, out):
        seen["sm"] = out["sm_positions"].dtype  # returns None: the output is unchanged

    t.model.structure_module.register_forward_hook(record)
    result = t.run()
    assert result.iterations == 2 and all(0 <= acc <= 1 for _, acc in result.evaluations)
    assert seen["sm"] == torch.float32
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # fp32 master weights


def test_alphafold_pretraining_schedule_is_selectable(mini_dataset, tmp_path):
    t = Trainer(_config(mini_dataset, tmp_path / "g", lr_schedule="alphafold"), discover({}),
                torch.device("cpu"))
    assert t.schedule.warmup_iters == 1000 and t.schedule.final_lr == 5e-5


def test_bad_sample_is_skipped_and_the_step_count_kept(mini_dataset, tmp_path, caplog):
    from scalefold.data import DataError

    cfg = _config(mini_dataset, tmp_path / "h", num_train_iters=3, val_every_iters=3,
                  resume=None)
    t = _trainer(cfg)
    good = t.train_dataset
    bad_index = t.sampler.pairs[1][0]

    class OneBadChain:
        def __getitem__(self, item):
            if item[0] == bad_index:
                raise DataError("empty MSA", chain=good.chain_id(bad_index), path="x.a3m")
            return good[item]

        def __len__(self):
            return len(good)

    t.loader.dataset = OneBadChain()
    with caplog.at_level("WARNING", logger="scalefold.data"):
        result = t.run()
    assert result.iterations == 3  # spare samples replaced the skipped ones
    assert t.loader.skipped and "empty MSA" in t.loader.skipped[0][1]
    assert any("x.a3m" in r.getMessage() for r in caplog.records)


def test_fused_optimizer_trains_like_the_plain_one(mini_dataset, tmp_path):
    from scalefold.train.config import SpeedConfig

    plain = _trainer(_config(mini_dataset, tmp_path / "p", num_train_iters=3))
    fused = _trainer(_config(mini_dataset, tmp_path / "f", num_train_iters=3,
                             speed=SpeedConfig(fused_optimizer=True)))
    plain.run()
    fused.run()
    for (n, a), b in zip(plain.model.named_parameters(), fused.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)


def test_cuda_graphs_are_refused_on_the_cpu(mini_dataset, tmp_path):
    from scalefold.train.config import SpeedConfig

    cfg = _config(mini_dataset, tmp_path / "g", speed=SpeedConfig.preset("h200"), precision="bf16")
    with pytest.raises(ValueError, match="CUDA device"):
        Trainer(cfg, discover({}), torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_trainer_leaves_init_state_and_trains(mini_dataset, tmp_path):
    from scalefold.train.config import SpeedConfig

    cfg = _config(mini_dataset, tmp_path / "cg", speed=SpeedConfig.preset("h200"), precision="bf16",
                  num_train_iters=4)
    t = Trainer(cfg, discover({}), torch.device("cuda"))
    fresh = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    seconds = t.prepare()
    assert seconds > 0 and len(t.graphed.signatures) == cfg.num_recycling_iters + 1
    for n, p in t.model.named_parameters():
        assert torch.equal(p, fresh[n]), n
    t.build_data()
    steps = []
    t.on_event = lambda name, data: steps.append(data["step"]) if name == "step" else None
    t.run()
    assert t.iteration == 4 and all(math.isfinite(s.loss) for s in steps)
    assert any(not torch.equal(p, fresh[n]) for n, p in t.model.named_parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_input_copy_stream_gives_the_graphed_steps_the_same_batches(mini_dataset, tmp_path):
    """Batches copied on their own stream, behind the running step, reach the graphed
    steps whole: the losses of copies queued on the compute stream (a race would feed a
    step a half-copied batch)."""
    from scalefold.train.config import SpeedConfig

    losses = {}
    for side in (False, True):
        speed = dataclasses.replace(SpeedConfig.preset("h200"), input_copy_stream=side,
                                    eval_warm_up=False)
        cfg = _config(mini_dataset, tmp_path / f"copies_{side}", speed=speed,
                      precision="bf16", num_train_iters=5)
        t = Trainer(cfg, discover({}), torch.device("cuda"))
        assert (t._input_copies.stream is not None) == side
        t.prepare()
        t.build_data()
        seen = []
        t.on_event = (lambda name, data, seen=seen:
                      seen.append(data["step"].loss) if name == "step" else None)
        t.run()
        losses[side] = seen
    assert len(losses[True]) == 5
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-3, atol=0)


def test_resume_after_a_skipped_sample_continues_exactly(mini_dataset, tmp_path):
    """A sample skipped before the checkpoint shifts every later position; the checkpoint
    records where each rank's list continues, so the resumed run trains on the same
    samples as the uninterrupted one."""
    from scalefold.data import DataError

    def with_bad_position(t, position):
        good = t.train_dataset
        bad = t.train_pairs[position - t._data_base] if position >= t._data_base else None

        class OneBadSample:
            def __getitem__(self, item):
                if bad is not None and tuple(item) == tuple(bad):
                    raise DataError("truncated MSA", chain=good.chain_id(item[0]), path="x.a3m")
                return good[item]

            def __len__(self):
                return len(good)

        t.loader.dataset = OneBadSample()
        return t

    straight = with_bad_position(_trainer(_config(mini_dataset, tmp_path / "a")), 1)
    straight.run()
    assert [p for p, _ in straight.loader.skipped] == [1]
    cfg_b = _config(mini_dataset, tmp_path / "b")
    first = with_bad_position(_trainer(cfg_b), 1)
    first.run(stop_after=4)
    first.close()  # the background write is on disk
    assert first.data_state() == {"next": 5, "extra": []}  # 4 trained (batch 1) + 1 skipped
    del first
    resumed = _trainer(dataclasses.replace(cfg_b, resume="latest"))
    assert resumed.iteration == 4 and resumed._data_base == 5
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
