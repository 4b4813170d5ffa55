"""The training procedure of the MLPerf reference (openfold/train.py), restructured.

One step: forward with the step's recycling count, loss on the final iteration's
features, backward, gradient clipping by global norm, Adam, SWA (EMA) update. Every
`val_every_iters` steps the SWA weights are evaluated on the whole validation set (mean
lDDT-Cα over chains); the run stops at the target or at `num_train_iters`.

Determinism: dropout is re-seeded from (seed, iteration) each step and every data
decision is a pure function of (seed, step), so a resumed run continues exactly where an
uninterrupted one would have been.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from scalefold.data import (
    CachedValidationLoader,
    DataLayout,
    DatasetReport,
    FeatureConfig,
    InOrderLoader,
    LoaderConfig,
    MsaConfig,
    PriorityQueueLoader,
    RecyclingSchedule,
    SamplerConfig,
    TemplateConfig,
    TrainingSampler,
    check_dataset,
    training_dataset,
    validation_dataset,
    validation_seeds,
)
from scalefold.data.selection import ValidationSetConfig, seed_from_string
from scalefold.losses import check_finite_losses
from scalefold.losses.alphafold_loss import use_clamped_fape_for_sample
from scalefold.train.async_eval import EvalServer, WeightSender
from scalefold.train.build import build_step
from scalefold.train.checkpointing import (
    AsyncCheckpointWriter,
    list_checkpoints,
    load_latest_checkpoint,
)
from scalefold.train.config import TrainConfig
from scalefold.train.distributed import DistEnv
from scalefold.train.evaluate import Evaluator
from scalefold.train.rundir import RunDirectoryError
from scalefold.train.step import HostCopy, StepOutputs, set_lr
from scalefold.train.stop import StopVote
from scalefold.train.topology import Topology, make_topology
from scalefold.utils.transfer import InputCopies

EventHook = Callable[[str, dict], None]


@dataclass
class StepResult:
    iteration: int
    loss: float
    terms: dict[str, float]
    num_recycling: int
    seconds: float  # from this step's launch to its results on the host
    data_wait_s: float = 0.0  # time the loop waited for this step's batch
    done_at: float = 0.0  # perf_counter when its results reached the host
    # The step's own device time (CUDA events around its work; None on a CPU): unlike
    # the host-side intervals it is not moved between neighbouring steps by the
    # one-step lag, so it compares with `bench step` per recycling count.
    device_s: float | None = None
    # Device time from the previous step's end to this step's start (its batch's copy to
    # the device, any wait for the host or the loader); None for a first step or a CPU.
    idle_before_s: float | None = None
    # Host seconds spent launching it, by part ("copies": the learning rate and seed set,
    # its batch queued to the device; "step": queueing the step or replaying its graphs;
    # "results": queueing the copy of its results to the host): a part that waits for
    # the device shows here.
    launch_s: dict[str, float] = field(default_factory=dict)


@dataclass
class _Launched:
    """A step whose device work may still run; its results are read by `_finish`."""

    iteration: int
    num_recycling: int
    started: float
    data_wait_s: float
    outputs: StepOutputs | None  # None: the host already holds `host`
    host: dict[str, float] | None = None
    pending: HostCopy | None = None
    events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None  # begin, end
    previous_end: torch.cuda.Event | None = None  # the step launched before this one
    launch_s: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    iterations: int
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    reached_target: bool = False
    train_seconds: float = 0.0


class Trainer:
    """Owns the model, optimizer, SWA, data and evaluation of one training process."""

    def __init__(
        self,
        cfg: TrainConfig,
        denv: DistEnv,
        device: torch.device,
        on_event: EventHook | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.cfg = cfg
        self.denv = denv
        self.device = device
        self.on_event = on_event or (lambda name, data: None)
        self.topo = topology or make_topology(denv, 0)
        self.is_leader = denv.rank == 0
        self.layout = DataLayout(Path(cfg.data_dir))
        # A rank that never evaluates builds no evaluation copy (its memory, its compiled
        # glue, its warm-up's graphs).
        built = build_step(cfg, device, self.topo, eval_copy=self.evaluates)
        self.built = built
        self.model_config = built.model_config
        self.model = built.model
        self.eval_model = built.eval_model
        # Synchronous and asynchronous evaluation both score through it (None on the
        # training ranks of an asynchronous run).
        self.evaluator = (Evaluator.from_built(built, device)
                          if self.eval_model is not None else None)
        self.optimizer = built.optimizer
        self.schedule = built.schedule
        self.swa = built.swa
        self.step_fn = built.step
        self.graphed = built.graphed  # captured by `prepare`
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.iteration = 0
        self._last_end: torch.cuda.Event | None = None  # the last launched step's end
        self._input_copies = InputCopies(device, cfg.speed.input_copy_stream)
        self.global_batch_size = cfg.local_batch_size * self.topo.dp_world
        self._resumed_data: dict | None = None  # this rank's data position at the resume
        self._writer: AsyncCheckpointWriter | None = None
        # Set by a signal handler (`scalefold.train.stop.StopSignal`): stop after a step.
        self.stop_requested: Callable[[], bool] = lambda: False
        self.stopped_by_signal = False

    def example_batches(self) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Synthetic inputs of every shape training will see (one per recycling count),
        with the training loader's feature names, shapes and dtypes."""
        from scalefold.utils.synthetic import synthetic_batch

        c = self.cfg
        out = []
        for n in range(c.num_recycling_iters + 1):
            feats = synthetic_batch(self.model_config, c.crop_size, c.max_msa_clusters,
                                    c.max_extra_msa, c.max_templates, num_iterations=n + 1,
                                    seed=n, device=self.device)
            feats = {k: v.expand(c.local_batch_size, *v.shape[1:]).contiguous()
                     for k, v in feats.items()}
            out.append((feats, torch.ones(c.local_batch_size, device=self.device)))
        return out

    @property
    def evaluates(self) -> bool:
        return self.topo.evaluates

    def prepare(self) -> float:
        """Initialisation work before `run_start`: capture the CUDA graphs of every
        recycling count (warm-up included), and with `eval_warm_up` the evaluation's
        first-time work; the training state is left untouched. Returns the seconds it
        took."""
        t0 = time.perf_counter()
        if self.graphed is not None:
            self.graphed.capture(self.example_batches())
        self.warm_up_evaluation()
        return time.perf_counter() - t0

    # ----------------------------------------------------------------------- data
    def _feature_config(self, mode: str) -> FeatureConfig:
        c = self.cfg
        return FeatureConfig(
            mode=mode, crop_size=c.crop_size, num_recycling_iters=c.num_recycling_iters,
            max_templates=c.max_templates,
            msa=MsaConfig(max_msa_clusters=c.max_msa_clusters, max_extra_msa=c.max_extra_msa),
        )

    def check_data(self) -> DatasetReport:
        """Check the dataset before `run_start` (`scalefold.data.check_dataset`): the
        layout, chains.csv, super.index, and every validation chain of this rank's share
        prepared once and kept for the evaluations. A fault that would stop the run raises
        here, naming the file and the chain."""
        c = self.cfg
        evaluates = self.evaluates
        self._data_report = check_dataset(
            self.layout, train_chain_ids=c.train_chain_ids, val_chain_ids=c.val_chain_ids,
            train_features=self._feature_config("train"),
            val_features=self._feature_config("eval"),
            train_templates=TemplateConfig(max_templates=c.max_templates),
            val_templates=TemplateConfig(max_templates=c.max_templates, shuffle_top_k=None),
            val_rank=self.topo.eval_rank if evaluates else 0,
            val_world_size=self.topo.eval_world if evaluates else 1,
            prepare_validation=evaluates,
        )
        return self._data_report

    def build_data(self) -> None:
        c = self.cfg
        tmpl = TemplateConfig(max_templates=c.max_templates)
        self.train_dataset, weights = training_dataset(
            self.layout, features=self._feature_config("train"), templates=tmpl,
            chain_ids=list(c.train_chain_ids) if c.train_chain_ids is not None else None,
        )
        self.val_dataset = validation_dataset(
            self.layout, features=self._feature_config("eval"),
            templates=TemplateConfig(max_templates=c.max_templates, shuffle_top_k=None),
            chain_ids=list(c.val_chain_ids) if c.val_chain_ids is not None else None,
        )
        # Spare steps' worth of samples replace skipped bad ones (a logged skip), so every
        # rank still yields exactly the remaining number of batches: DDP needs that.
        spare_steps = max(8, c.num_train_iters // 100)
        self.sampler = TrainingSampler(
            weights,
            SamplerConfig(
                global_batch_size=self.global_batch_size,
                num_steps=c.num_train_iters + spare_steps,
                seed=seed_from_string(f"initial_training_sampler_{c.seed}"),
                rank=self.topo.dp_rank, world_size=self.topo.dp_world,
            ),
        )
        # Where this rank's sample list continues: after a resume, the first position
        # neither trained on nor skipped before the checkpoint (positions are this rank's
        # list indices); `extra` holds later positions already used (PQ takes samples a
        # little out of order).
        per_rank = c.local_batch_size
        resumed = self._resumed_data or {}
        self._data_base = int(resumed.get("next", self.iteration * per_rank))
        exclude = frozenset(int(p) - self._data_base for p in resumed.get("extra", ()))
        self.train_pairs = self.sampler.pairs[self._data_base:]
        self.recycling = RecyclingSchedule(
            seed=seed_from_string(f"recycling_{c.seed}"),
            values=tuple(range(c.num_recycling_iters + 1)),
        )
        loader_cls = (
            PriorityQueueLoader if c.loader == "InitialTrainingDataloaderPQ" else InOrderLoader
        )
        self.loader = loader_cls(
            self.train_dataset, self.train_pairs, self.recycling,
            LoaderConfig(batch_size=c.local_batch_size, num_workers=c.num_workers,
                         start_step=self.iteration,
                         num_batches=max(0, c.num_train_iters - self.iteration),
                         exclude=exclude),
        )
        report = getattr(self, "_data_report", None)
        if report is not None:  # the validation samples the check prepared
            self.val_dataset = report.validation_dataset
            self.val_loader = report.validation_loader(self.topo.eval_rank, self.topo.eval_world)
        else:
            self.val_loader = CachedValidationLoader(
                self.val_dataset, validation_seeds(self.val_dataset),
                rank=self.topo.eval_rank, world_size=self.topo.eval_world,
            )

    # ------------------------------------------------------------------ one step
    def train_step(self, batch, use_clamped: torch.Tensor) -> StepResult:
        """One step, its results read back before returning."""
        return self._finish(self._launch(batch, use_clamped, data_wait_s=0.0))

    def _launch(self, batch, use_clamped: torch.Tensor, data_wait_s: float) -> _Launched:
        """Start one step. On the fused path nothing waits for the device: the results
        are copied to pinned host memory behind the step and read by `_finish`, after the
        next step has been launched, so the host's work between steps (the next batch,
        its copy to the device) overlaps this step's device work. A non-finite loss
        skipped its own update on the device; `_finish` raises for it."""
        start = time.perf_counter()
        self.iteration += 1
        it = self.iteration
        set_lr(self.optimizer, self.schedule.lr_at(it))
        torch.manual_seed(seed_from_string(f"training_seed_{self.cfg.seed}") + it)
        feats, (use_clamped,) = self._input_copies(batch.features, use_clamped)
        launched = _Launched(it, batch.num_recycling, start, data_wait_s, None)
        mark = time.perf_counter()
        launched.launch_s["copies"] = mark - start
        timed = self.device.type == "cuda"
        if timed:
            begin = torch.cuda.Event(enable_timing=True)
            begin.record()
        if self.graphed is not None:
            if not self.graphed.has(feats, use_clamped):
                # Shapes not foreseen by `example_batches`: captured here, inside the
                # timed region. Logged, since it costs a few steps' time.
                print(f"[scalefold] step {it}: capturing a CUDA graph for new input shapes",
                      file=sys.stderr, flush=True)
                self.graphed.capture([(feats, use_clamped)])
            launched.outputs = self.graphed(feats, use_clamped)
        elif self.step_fn.fused:
            launched.outputs = self.step_fn(feats, use_clamped)
        else:
            # The reference's order: the loss is checked on the host before the update.
            def check(out: StepOutputs) -> None:
                launched.host = _checked(out.to_host(), it)

            self.step_fn(feats, use_clamped, before_update=check)
        if timed:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            launched.events = (begin, end)
            launched.previous_end, self._last_end = self._last_end, end
        now = time.perf_counter()
        launched.launch_s["step"], mark = now - mark, now
        if launched.outputs is not None:
            # A graph's outputs are overwritten by its next replay: copy them now.
            launched.pending = launched.outputs.copy_to_host()
            launched.outputs = None
        launched.launch_s["results"] = time.perf_counter() - mark
        return launched

    def _finish(self, launched: _Launched) -> StepResult:
        if launched.host is None:
            launched.host = _checked(launched.pending.values(), launched.iteration)
        values = {k: v for k, v in launched.host.items() if k != "grad_norm"}
        now = time.perf_counter()
        device_s = idle_s = None
        if launched.events is not None:
            begin, end = launched.events
            end.synchronize()  # already done: the results copied behind it have arrived
            device_s = begin.elapsed_time(end) / 1e3
            if launched.previous_end is not None:
                idle_s = launched.previous_end.elapsed_time(begin) / 1e3
        return StepResult(
            iteration=launched.iteration, loss=values.pop("total"),
            num_recycling=launched.num_recycling, terms=values,
            seconds=now - launched.started, data_wait_s=launched.data_wait_s, done_at=now,
            device_s=device_s, idle_before_s=idle_s, launch_s=launched.launch_s,
        )

    # ----------------------------------------------------------------- evaluation
    def warm_up_evaluation(self) -> int:
        """With `SpeedConfig.eval_warm_up`: run the evaluation forward once per length
        bucket up to the validation set's maximum length, on synthetic chains, so the
        first evaluation does no compilation, autotuning or capture and no validation
        data is read before `run_start`. Returns the shapes."""
        if not self.built.eval_speed.eval_warm_up or self.evaluator is None:
            return 0
        c = self.cfg
        return self.evaluator.warm_up_buckets(
            ValidationSetConfig().max_sequence_length, c.max_msa_clusters, c.max_extra_msa,
            c.max_templates, c.num_recycling_iters + 1)

    def _score_shard(self) -> list[tuple[int, float]]:
        """lDDT-Cα of `eval_model` on this rank's share of the validation chains."""
        return self.evaluator.score_chains(self.val_loader, name=self.val_dataset.chain_id)

    def _mean_over_chains(self, scores: list[tuple[int, float]], group) -> float:
        if self.topo.eval_world > 1:
            gathered: list = [None] * self.topo.eval_world
            dist.all_gather_object(gathered, scores, group=group)
            scores = [s for part in gathered for s in part]
        per_chain = dict(scores)  # duplicates from padding collapse onto one chain
        return sum(per_chain.values()) / max(1, len(per_chain))

    def evaluate(self) -> float:
        """Synchronous evaluation: mean lDDT-Cα of the SWA weights over all validation
        chains, shared by all ranks."""
        self.swa.copy_to(self.eval_model)
        return self._mean_over_chains(self._score_shard(), group=None)

    def serve_evaluations(self) -> RunResult:
        """The loop of an asynchronous evaluation rank: runs until the trainers finish."""
        server = EvalServer(self.topo, self.device, sum(s.numel() for s in self.swa.shadow))
        result = RunResult(iterations=0)
        signalled = False
        while True:
            iteration, final, flat = server.receive()
            if final:
                result.iterations = iteration
                break
            self.evaluator.load_flat(flat)
            samples = iteration * self.global_batch_size
            self.on_event("eval_start", {"epoch_num": samples})
            score = self._mean_over_chains(self._score_shard(), group=self.topo.eval_group)
            result.evaluations.append((iteration, score))
            self.on_event("eval_accuracy", {"epoch_num": samples, "value": score})
            self.on_event("eval_stop", {"epoch_num": samples})
            if score >= self.cfg.target_avg_lddt_ca and not signalled:
                result.reached_target = True
                self.on_event("target_reached", {"iteration": iteration})
                server.signal(iteration)
                signalled = True
        if not signalled:
            server.signal(-1)
        return result

    # ---------------------------------------------------------------- checkpoints
    def data_state(self) -> dict:
        """This rank's place in its sample list: the first position neither trained on nor
        skipped, and the later positions already used (absolute list indices)."""
        used = set(self.loader.consumed) | {p for p, _ in self.loader.skipped}
        used |= set(self.loader.config.exclude)
        nxt = 0
        while nxt in used:
            nxt += 1
        return {"next": self._data_base + nxt,
                "extra": sorted(self._data_base + p for p in used if p > nxt)}

    def _all_data_states(self) -> dict[int, dict]:
        """Every data-parallel rank's `data_state`, keyed by its data-parallel rank (DAP
        peers share one). A collective over the training ranks."""
        mine = (self.topo.dp_rank, self.data_state())
        if self.topo.num_train_ranks > 1:
            gathered: list = [None] * self.topo.num_train_ranks
            dist.all_gather_object(gathered, mine, group=self.topo.train_group)
        else:
            gathered = [mine]
        return dict(gathered)

    def state_dict(self, data: dict[int, dict] | None = None) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "swa": self.swa.state_dict(),
            "config": repr(self.cfg),
        }
        if data is not None:
            state["data"] = data
        return state

    def save_checkpoint(self) -> None:
        """Called by every training rank (the data positions are gathered); the leader
        hands the state to the background writer."""
        data = self._all_data_states() if hasattr(self, "loader") else None
        if not self.is_leader:
            return
        if self._writer is None:
            self._writer = AsyncCheckpointWriter(self.cfg.checkpoints,
                                                 self.cfg.keep_last_checkpoints)
        self._writer.save(self.iteration, self.state_dict(data))

    def close(self) -> None:
        """Wait for a checkpoint still being written (its error is raised here)."""
        if self._writer is not None:
            self._writer.close()

    def maybe_resume(self) -> int | None:
        """Load the checkpoint `cfg.resume` names; returns its iteration, or None for a
        fresh run. A fresh run refuses a checkpoint directory that already holds
        checkpoints: continuing an earlier run must be asked for (`--resume`)."""
        where = self.cfg.checkpoints
        if not self.cfg.resume:
            found = list_checkpoints(where)
            if found:
                raise RunDirectoryError(
                    f"{where} already holds checkpoints of an earlier run (newest: "
                    f"{found[-1][1].name}); pass --resume to continue that run, or give this "
                    f"run a directory of its own (--output-dir)")
            return None
        target = where if self.cfg.resume == "latest" else Path(self.cfg.resume)
        if target.is_dir():
            state = load_latest_checkpoint(target, self.device)
        elif target.is_file():
            state = torch.load(target, map_location=self.device, weights_only=False)
        else:
            state = None
        if state is None:
            raise RunDirectoryError(f"--resume: no readable checkpoint in {target}")
        self.model.load_state_dict(state["model"])
        self.built.load_optimizer_state(state["optimizer"])
        self.swa.load_state_dict(state["swa"])
        self.iteration = int(state["iteration"])
        data = state.get("data") or {}
        self._resumed_data = data.get(self.topo.dp_rank)
        if self._resumed_data is None and data:
            raise ValueError(
                f"checkpoint has sample positions for data-parallel ranks {sorted(data)}, "
                f"not for rank {self.topo.dp_rank}: resume with the same number of ranks")
        return self.iteration

    # ------------------------------------------------------------------------ run
    def run(self, stop_after: int | None = None) -> RunResult:
        """Train until the target, `num_train_iters`, or `stop_after` more steps.

        Events for the MLPerf log (`on_event`): "cycle_start"/"cycle_stop" around each
        block of `val_every_iters` steps, "eval_start"/"eval_accuracy"/"eval_stop" around
        each evaluation; `epoch_num` is the number of training samples seen.
        """
        c = self.cfg
        result = RunResult(iterations=self.iteration)
        progress = _Progress(progress_mode(self.is_leader, c.progress, sys.stderr.isatty()))
        steps_done = 0
        t0 = time.perf_counter()
        cycle_open = False
        cycle_t0, cycle_samples = time.perf_counter(), 0
        sender = WeightSender(self.topo, self.device) if self.topo.is_async else None
        launched: _Launched | None = None  # the last step, results not yet read

        def finish_launched() -> None:
            nonlocal launched
            if launched is not None:
                step = self._finish(launched)
                launched = None
                progress.update(step)
                self.on_event("step", {"step": step})

        vote = StopVote(self.topo.train_group, self.topo.num_train_ranks, self.device)
        ckpt_every = c.checkpoint_every_iters
        batches = iter(self.loader)
        while True:
            waited = time.perf_counter()
            try:
                batch = next(batches, None)
            except Exception:
                if self.stop_requested():  # a signal may have ended the loader's workers
                    self.stopped_by_signal = True
                    break
                raise
            waited = time.perf_counter() - waited
            if batch is None or self.iteration >= c.num_train_iters:
                break
            if not cycle_open:
                cycle_end = min(
                    (self.iteration // c.val_every_iters + 1) * c.val_every_iters,
                    c.num_train_iters,
                )
                self.on_event("cycle_start", {"epoch_num": cycle_end * self.global_batch_size})
                cycle_open, cycle_t0, cycle_samples = True, time.perf_counter(), 0
            seeds = [self.train_pairs[p][1] for p in batch.positions]
            use_clamped = torch.tensor(
                [use_clamped_fape_for_sample(s, c.use_clamped_fape_probability) for s in seeds]
            )
            current = self._launch(batch, use_clamped, waited)
            finish_launched()  # the previous step's, read once this one is queued
            launched = current
            # Every rank stops after the same step: the vote posted behind the previous
            # step, read now that it has finished; this step's vote is posted next.
            signalled = vote.result()
            vote.post(self.stop_requested())
            steps_done += 1
            cycle_samples += self.global_batch_size
            at_eval = self.iteration % c.val_every_iters == 0
            stopping = (stop_after is not None and steps_done >= stop_after) or signalled
            checkpoint_due = ckpt_every > 0 and self.iteration % ckpt_every == 0
            if (at_eval or stopping or sender is not None or self.iteration >= c.num_train_iters
                    or checkpoint_due):
                finish_launched()  # everything below reads or times finished work
            if at_eval or self.iteration >= c.num_train_iters:
                samples = self.iteration * self.global_batch_size
                elapsed = time.perf_counter() - cycle_t0
                self.on_event("cycle_stop", {
                    "epoch_num": samples, "iteration": self.iteration,
                    "cycle": -(-self.iteration // c.val_every_iters),
                    "samples_per_second": cycle_samples / max(elapsed, 1e-9),
                })
                cycle_open = False
            if at_eval and sender is not None:
                sender.send(self.iteration, self.swa.shadow)
            elif at_eval:
                self.on_event("eval_start", {"epoch_num": samples})
                score = self.evaluate()
                result.evaluations.append((self.iteration, score))
                self.on_event("eval_accuracy", {"epoch_num": samples, "value": score})
                self.on_event("eval_stop", {"epoch_num": samples})
                progress.note(f"iteration {self.iteration}: mean lDDT-Ca {score:.4f}")
                if score >= c.target_avg_lddt_ca:
                    result.reached_target = True
            if sender is not None and sender.should_stop():
                result.reached_target = True
            if signalled:
                self.stopped_by_signal = True
                progress.note(f"stopped by a signal after step {self.iteration}")
            if checkpoint_due or (ckpt_every > 0 and result.reached_target) or (
                    signalled and c.checkpoint_on_stop):
                self.save_checkpoint()
            if result.reached_target or stopping:
                break
        finish_launched()
        if sender is not None:
            sender.finish(self.iteration)
        progress.close()
        result.iterations = self.iteration
        result.train_seconds = time.perf_counter() - t0
        return result


def _checked(host: dict[str, float], iteration: int) -> dict[str, float]:
    """`host` if the loss and its terms are finite; else `NonFiniteLossError` naming them
    (a non-finite gradient norm alone only skipped the update)."""
    if not all(math.isfinite(v) for k, v in host.items() if k != "grad_norm"):
        print(f"[scalefold] step {iteration}: non-finite loss", file=sys.stderr, flush=True)
        check_finite_losses({k: torch.tensor(v) for k, v in host.items() if k != "grad_norm"})
    return host


def progress_mode(is_leader: bool, progress: bool | None, tty: bool) -> str:
    """Only the global rank 0 prints; `--no-progress` (False) silences it too."""
    if not is_leader or progress is False:
        return "off"
    return "bar" if progress or tty else "lines"


class _Progress:
    """What the global rank 0 prints: a tqdm bar (mode "bar"), one plain line per 10
    steps ("lines"), or nothing ("off": every other rank, and `--no-progress`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(unit="step", dynamic_ncols=True)

    def update(self, step: StepResult) -> None:
        msg = {"loss": f"{step.loss:.3f}", "fape": f"{step.terms.get('fape', math.nan):.3f}",
               "r": step.num_recycling, "s/step": f"{step.seconds:.2f}"}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(msg)
        elif self.mode == "lines" and step.iteration % 10 == 0:
            print(f"step {step.iteration} " + " ".join(f"{k}={v}" for k, v in msg.items()),
                  flush=True)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        elif self.mode == "lines":
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
