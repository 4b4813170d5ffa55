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

import contextlib
import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from scalefold.checkpoint import load_reference_checkpoint
from scalefold.data import (
    CachedValidationLoader,
    DataLayout,
    FeatureConfig,
    InOrderLoader,
    LoaderConfig,
    MsaConfig,
    PriorityQueueLoader,
    RecyclingSchedule,
    SamplerConfig,
    TemplateConfig,
    TrainingSampler,
    training_dataset,
    validation_dataset,
    validation_seeds,
)
from scalefold.data.selection import last_iteration, seed_from_string
from scalefold.losses import AlphaFoldLoss, LossConfig, check_finite_losses
from scalefold.losses.alphafold_loss import use_clamped_fape_for_sample
from scalefold.metrics import lddt_ca
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.async_eval import EvalServer, WeightSender
from scalefold.train.checkpointing import load_latest_checkpoint, save_training_checkpoint
from scalefold.train.config import TrainConfig
from scalefold.train.distributed import DistEnv
from scalefold.train.flat_params import FlatParameters
from scalefold.train.graphs import GraphedTrainStep
from scalefold.train.schedule import LRSchedule
from scalefold.train.step import (
    FlatGradSync,
    StepOutputs,
    TrainStep,
    apply_speedups,
    make_adam,
    set_lr,
)
from scalefold.train.swa import WeightEMA
from scalefold.train.topology import Topology, make_topology

EventHook = Callable[[str, dict], None]


def _model_config(cfg: TrainConfig) -> AlphaFoldConfig:
    model_cfg = getattr(AlphaFoldConfig, cfg.preset)()
    if cfg.activation_checkpointing:
        model_cfg = dataclasses.replace(model_cfg, activation_checkpointing=True)
    return model_cfg


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def set_precision(precision: str) -> contextlib.AbstractContextManager:
    """Matmul precision for fp32/tf32; bf16 autocast (fp32 master weights) for bf16."""
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class StepResult:
    iteration: int
    loss: float
    terms: dict[str, float]
    num_recycling: int
    seconds: float


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

        self.model_config = _model_config(cfg)
        # Parameters initialised from a seed of their own, so the initial weights do not
        # depend on how many random numbers anything else drew first.
        with _forked_rng(seed_from_string(f"alphafold_init_{cfg.seed}")):
            self.model = AlphaFold(self.model_config).to(device)
        self.model.train()
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        speed = cfg.speed
        if speed.cuda_graphs:
            _check_graphs_supported(cfg, device, self.topo)
        self.flat: FlatParameters | None = None
        if speed.flat_params:
            _check_flat_params_supported(cfg, self.topo)
            self.flat = FlatParameters(list(self.model.parameters()))
        # What the optimizer updates: the model's parameters, or the one flat parameter.
        train_params = [self.flat.param] if self.flat else list(self.model.parameters())
        self.optimizer = make_adam(
            train_params, cfg.base_lr, device, fused=speed.fused_optimizer,
            capturable=speed.cuda_graphs,
        )
        # Captured graphs hold these lr tensors: loads of optimizer state must keep them.
        self._lr_tensors = [g["lr"] for g in self.optimizer.param_groups
                            if isinstance(g["lr"], torch.Tensor)]
        self.schedule = (
            LRSchedule.alphafold_pretraining() if cfg.lr_schedule == "alphafold" else
            LRSchedule(base_lr=cfg.base_lr, warmup_lr_init=cfg.warmup_lr_init,
                       warmup_iters=cfg.warmup_lr_iters)
        )
        self.loss_fn = AlphaFoldLoss(LossConfig.mlperf()).to(device)
        self.swa = WeightEMA(self.model, decay=cfg.swa_decay, flat=self.flat)
        if cfg.initialize_parameters_from is not None:
            extra = load_reference_checkpoint(self.model, cfg.initialize_parameters_from)
            # The MLPerf initial checkpoint is resumable: it carries Adam's state too.
            if "optimizer_state_dict" in extra:
                self._load_optimizer_state(extra["optimizer_state_dict"])
        # A second copy of the network holds the SWA weights for evaluation. It stays
        # unsharded even under DAP: each rank scores whole chains of its own, of any length.
        self.eval_model = copy.deepcopy(self.model).eval()
        # Kernels and precision islands on each copy on its own (keep_fp32 wraps instance
        # methods, which a deepcopy would share). Evaluation runs once per interval at
        # varying lengths: no compilation there.
        apply_speedups(self.model, speed, cfg.precision, device.type)
        apply_speedups(self.eval_model, dataclasses.replace(speed, compile_glue=False),
                       cfg.precision, device.type)
        if self.topo.dap_group is not None:
            from scalefold.parallel import parallelize_dap

            # "scale": DDP (or the flat all-reduce) below averages over all training ranks,
            # DAP peers included, which makes the scaled partial gradients exact.
            parallelize_dap(self.model, self.topo.dap_group, grad_reduction="scale")
        self.ddp: nn.Module = self.model
        grad_sync = None
        if self.topo.num_train_ranks > 1 and not self.topo.is_eval_rank and (
                speed.grad_sync == "flat"):
            grad_sync = FlatGradSync(self.topo.train_group, self.topo.num_train_ranks,
                                     flat=self.flat.grad if self.flat else None)
        elif self.flat is not None:
            # One rank: nothing to all-reduce; the sync only zeroes the flat gradients.
            grad_sync = FlatGradSync(flat=self.flat.grad, between_graphs=False)
        elif self.topo.num_train_ranks > 1 and not self.topo.is_eval_rank:
            # Heads whose loss weight is 0 (experimentally resolved) get no gradient, so
            # DDP must be told some parameters may not take part in a step.
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True, process_group=self.topo.train_group,
            )
        self.iteration = 0
        self.global_batch_size = cfg.local_batch_size * self.topo.dp_world
        self.step_fn = TrainStep(
            self.ddp, train_params, self.optimizer, self.loss_fn, self.swa,
            self.model, cfg.gradient_clip_norm, fused=speed.fused_optimizer,
            autocast=lambda: set_precision(cfg.precision), grad_sync=grad_sync,
        )
        self.graphed: GraphedTrainStep | None = None
        self._resumed_data: dict | None = None  # this rank's data position at the resume

    def _load_optimizer_state(self, state: dict) -> None:
        """`state` in the per-parameter form (checkpoints, the reference's)."""
        if self.flat is not None:
            state = self.flat.from_per_param_state(state)
        self.optimizer.load_state_dict(state)
        if self._lr_tensors:
            for g, t in zip(self.optimizer.param_groups, self._lr_tensors, strict=True):
                t.fill_(float(g["lr"]))
                g["lr"] = t

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

    def prepare(self) -> float:
        """Initialisation work before `run_start`: capture the CUDA graphs of every
        recycling count (warm-up included); the training state is left untouched.
        Returns the seconds it took."""
        if not self.cfg.speed.cuda_graphs or self.topo.is_eval_rank:
            return 0.0
        t0 = time.perf_counter()
        self.graphed = GraphedTrainStep(self.step_fn)
        self.graphed.capture(self.example_batches())
        return time.perf_counter() - t0

    # ----------------------------------------------------------------------- data
    def _feature_config(self, mode: str) -> FeatureConfig:
        c = self.cfg
        return FeatureConfig(
            mode=mode, crop_size=c.crop_size, num_recycling_iters=c.num_recycling_iters,
            max_templates=c.max_templates,
            msa=MsaConfig(max_msa_clusters=c.max_msa_clusters, max_extra_msa=c.max_extra_msa),
        )

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
        self.val_loader = CachedValidationLoader(
            self.val_dataset, validation_seeds(self.val_dataset),
            rank=self.topo.eval_rank, world_size=self.topo.eval_world,
        )

    # ------------------------------------------------------------------ one step
    def train_step(self, batch, use_clamped: torch.Tensor) -> StepResult:
        start = time.perf_counter()
        self.iteration += 1
        it = self.iteration
        set_lr(self.optimizer, self.schedule.lr_at(it))
        torch.manual_seed(seed_from_string(f"training_seed_{self.cfg.seed}") + it)
        feats = _to(batch.features, self.device)
        use_clamped = use_clamped.to(self.device)
        host: dict[str, float] = {}

        def check(out: StepOutputs) -> None:
            # One device-to-host copy for the total and every term (not one per term).
            host.update(out.to_host())
            if not all(math.isfinite(v) for v in host.values()):
                check_finite_losses(out.breakdown())  # raises, naming the non-finite terms

        if self.graphed is not None:
            if not self.graphed.has(feats, use_clamped):
                # Shapes not foreseen by `example_batches`: captured here, inside the
                # timed region. Logged, since it costs a few steps' time.
                print(f"[scalefold] step {it}: capturing a CUDA graph for new input shapes",
                      file=sys.stderr, flush=True)
                self.graphed.capture([(feats, use_clamped)])
            check(self.graphed(feats, use_clamped))  # the update skipped itself if not finite
        elif self.step_fn.fused:
            check(self.step_fn(feats, use_clamped))
        else:
            self.step_fn(feats, use_clamped, before_update=check)
        values = {k: v for k, v in host.items() if k != "grad_norm"}
        return StepResult(
            iteration=it, loss=values.pop("total"), num_recycling=batch.num_recycling,
            terms=values, seconds=time.perf_counter() - start,
        )

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _score_shard(self) -> list[tuple[int, float]]:
        """lDDT-Cα of `eval_model` on this rank's share of the validation chains."""
        scores = []
        for index, batch in self.val_loader:
            feats = _to(batch, self.device)
            with set_precision(self.cfg.precision):
                out = self.eval_model(feats)
            last = last_iteration(feats)
            score = lddt_ca(
                out["final_atom_positions"].float(), last["all_atom_positions"],
                last["all_atom_mask"],
            )
            scores.append((index, float(score.mean())))
        return scores

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
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(
                    flat.to(next(self.eval_model.parameters()).dtype),
                    self.eval_model.parameters(),
                )
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
            # Per parameter, with or without flat parameters: checkpoints stay
            # interchangeable between the two.
            "optimizer": (self.flat.to_per_param_state(self.optimizer.state_dict())
                          if self.flat else self.optimizer.state_dict()),
            "swa": self.swa.state_dict(),
            "config": repr(self.cfg),
        }
        if data is not None:
            state["data"] = data
        return state

    def save_checkpoint(self) -> Path | None:
        """Called by every training rank (the data positions are gathered); the leader
        writes."""
        data = self._all_data_states() if hasattr(self, "loader") else None
        if not self.is_leader:
            return None
        return save_training_checkpoint(
            Path(self.cfg.output_dir) / "checkpoints", self.iteration, self.state_dict(data),
            keep_last=self.cfg.keep_last_checkpoints,
        )

    def maybe_resume(self) -> bool:
        if not self.cfg.resume:
            return False
        state = load_latest_checkpoint(Path(self.cfg.output_dir) / "checkpoints", self.device)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self._load_optimizer_state(state["optimizer"])
        self.swa.load_state_dict(state["swa"])
        self.iteration = int(state["iteration"])
        data = state.get("data") or {}
        self._resumed_data = data.get(self.topo.dp_rank)
        if self._resumed_data is None and data:
            raise ValueError(
                f"checkpoint has sample positions for data-parallel ranks {sorted(data)}, "
                f"not for rank {self.topo.dp_rank}: resume with the same number of ranks")
        return True

    # ------------------------------------------------------------------------ run
    def run(self, stop_after: int | None = None) -> RunResult:
        """Train until the target, `num_train_iters`, or `stop_after` more steps.

        Events for the MLPerf log (`on_event`): "cycle_start"/"cycle_stop" around each
        block of `val_every_iters` steps, "eval_start"/"eval_accuracy"/"eval_stop" around
        each evaluation; `epoch_num` is the number of training samples seen.
        """
        c = self.cfg
        result = RunResult(iterations=self.iteration)
        progress = _Progress(enabled=self.is_leader and (
            c.progress if c.progress is not None else sys.stderr.isatty()))
        steps_done = 0
        t0 = time.perf_counter()
        cycle_open = False
        cycle_t0, cycle_samples = time.perf_counter(), 0
        sender = WeightSender(self.topo, self.device) if self.topo.is_async else None
        for batch in self.loader:
            if self.iteration >= c.num_train_iters:
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
            step = self.train_step(batch, use_clamped)
            steps_done += 1
            cycle_samples += self.global_batch_size
            progress.update(step)
            self.on_event("step", {"step": step})
            at_eval = self.iteration % c.val_every_iters == 0
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
            if self.iteration % c.checkpoint_every_iters == 0 or result.reached_target:
                self.save_checkpoint()
            if result.reached_target or (stop_after is not None and steps_done >= stop_after):
                break
        if sender is not None:
            sender.finish(self.iteration)
        progress.close()
        result.iterations = self.iteration
        result.train_seconds = time.perf_counter() - t0
        return result


def _check_graphs_supported(cfg: TrainConfig, device: torch.device, topo: Topology) -> None:
    if device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device; this process runs on {device}")
    # Under DAP the forward and backward graph holds the DAP collectives (NCCL ones can be
    # captured; the warm-up creates their communicators first). Not yet run on GPUs.
    if topo.num_train_ranks > 1 and cfg.speed.grad_sync != "flat":
        raise ValueError("cuda_graphs with several training ranks needs grad_sync='flat' "
                         "(--grad-sync flat): DDP's hooks are not captured")


def _check_flat_params_supported(cfg: TrainConfig, topo: Topology) -> None:
    if topo.dap_group is not None:
        raise ValueError("flat_params does not support DAP (its gradient reduction hooks "
                         "the parameters one by one)")
    if topo.num_train_ranks > 1 and cfg.speed.grad_sync != "flat":
        raise ValueError("flat_params with several training ranks needs grad_sync='flat' "
                         "(--grad-sync flat): DDP's buckets would copy the gradients out of "
                         "the flat buffer")


@contextlib.contextmanager
def _forked_rng(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class _Progress:
    """A tqdm bar on interactive terminals; one plain line per 10 steps otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(unit="step", dynamic_ncols=True)

    def update(self, step: StepResult) -> None:
        msg = {"loss": f"{step.loss:.3f}", "fape": f"{step.terms.get('fape', math.nan):.3f}",
               "r": step.num_recycling, "s/step": f"{step.seconds:.2f}"}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(msg)
        elif step.iteration % 10 == 0:
            print(f"step {step.iteration} " + " ".join(f"{k}={v}" for k, v in msg.items()),
                  flush=True)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
