"""The one builder of a training step: config in, everything a step runs on out.

`build_step` is the only place that turns a `TrainConfig` into a model, its speed-ups,
its parallelism, the optimizer, the SWA copy and the step; `Trainer`, `bench step`,
`bench dp` and `bench dap` all call it, so what the benches time is what
`scalefold train` runs. The order, as torchtitan's `parallelize_*` functions read:

1. the model, initialised from its own named seed (and the initial checkpoint, if any);
2. its speed-ups (`scalefold.kernels.apply_speedups`), and an unsharded, uncompiled
   copy for evaluation;
3. parallelism: DAP shards the stacks; several training ranks average gradients with
   DDP's hooks or a flat gradient buffer (`SpeedConfig.grad_sync`, train/grad_sync.py);
4. Adam (fused and capturable when the speed-ups ask), the learning-rate schedule, the
   loss, the SWA (EMA) copy;
5. the step (`TrainStep`), and its CUDA graphs, uncaptured (`GraphedTrainStep`).

`precision_context` is the one precision policy: fp32 (no TF32), tf32, or bf16 autocast
with float32 master weights, whose float32 islands (structure module, heads) run without
TF32 (with TF32 there, training needed 10% more steps: docs/PERFORMANCE.md).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from scalefold.checkpoint import load_reference_checkpoint
from scalefold.data.selection import seed_from_string
from scalefold.kernels import apply_speedups, compile_glue, compile_structure_module
from scalefold.kernels._autocast import WeightCasts
from scalefold.kernels.optimizer import SinglePassUpdate
from scalefold.kernels.templates import reuse_template_pairs
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig, TrainConfig
from scalefold.train.grad_sync import BucketedGradSync, FlatGradSync
from scalefold.train.graphs import GraphedTrainStep
from scalefold.train.schedule import LRSchedule
from scalefold.train.step import TrainStep, make_adam
from scalefold.train.swa import WeightEMA
from scalefold.train.topology import Topology


def precision_context(precision: str, device_type: str,
                      blas: str = "cublas") -> contextlib.AbstractContextManager:
    """Set the matmul precision and library and return the forward's autocast context (or
    a null one).

    fp32: no TF32 anywhere; tf32: TF32 matmuls and convolutions; bf16: bf16 autocast, and
    no TF32 in the float32 islands. `blas` (CUDA): the library PyTorch hands its matmuls to
    (`SpeedConfig.blas`); captured CUDA graphs keep the kernels chosen at capture.
    """
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if device_type == "cuda":
        torch.backends.cuda.preferred_blas_library(blas)
    if precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_config(cfg: TrainConfig) -> AlphaFoldConfig:
    model_cfg = getattr(AlphaFoldConfig, cfg.preset)()
    if cfg.activation_checkpointing:
        model_cfg = dataclasses.replace(model_cfg, activation_checkpointing=True)
    return model_cfg


@dataclass
class BuiltStep:
    """What `build_step` made; the trainer and the benches hold one each. The forward's
    module (the model or its DDP wrapper), the parameters and the loss are `step`'s."""

    model_config: AlphaFoldConfig
    model: nn.Module  # the plain model with its speed-ups (and DAP), what the SWA tracks
    eval_model: nn.Module | None  # unsharded, uncompiled copy for the SWA weights
    optimizer: torch.optim.Adam
    lr_tensors: list[torch.Tensor]  # captured graphs read these: keep them on state loads
    schedule: LRSchedule
    swa: WeightEMA
    step: TrainStep
    graphed: GraphedTrainStep | None  # None: eager; captured by its owner
    autocast: Callable[[], contextlib.AbstractContextManager]
    # The evaluation levers this rank evaluates with (`SpeedConfig.for_evaluation`).
    eval_speed: SpeedConfig

    def load_optimizer_state(self, state: dict) -> None:
        """Load Adam's state (per-parameter form) keeping the captured lr tensors."""
        self.optimizer.load_state_dict(state)
        for g, t in zip(self.optimizer.param_groups, self.lr_tensors, strict=False):
            t.fill_(float(g["lr"]))
            g["lr"] = t


def check_supported(cfg: TrainConfig, device: torch.device, topo: Topology) -> None:
    """Combinations that cannot run, refused before anything is built."""
    speed = cfg.speed
    multi = topo.num_train_ranks > 1 and not topo.is_eval_rank
    if speed.cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device; this process runs on {device}")
    if speed.cuda_graphs and multi and speed.grad_sync == "ddp":
        raise ValueError("cuda_graphs with several training ranks needs grad_sync='flat' "
                         "or 'bucketed' (--grad-sync flat): DDP's hooks are not captured")
    if speed.dap_overlap and speed.cuda_graphs and topo.dap_size > 1:
        raise ValueError("dap_overlap runs its all-to-alls asynchronously, which is not "
                         "tested inside CUDA graph capture yet: use it with --no-cuda-graphs")
    if speed.compile_glue and topo.dap_size > 1:
        raise ValueError("compile_glue is not supported under DAP (it traces the plain "
                         "blocks' forward, which the DAP blocks replace)")


def build_step(cfg: TrainConfig, device: torch.device, topo: Topology, *,
               eval_copy: bool = True) -> BuiltStep:
    """Everything one training process steps with (see the module docstring)."""
    check_supported(cfg, device, topo)
    speed = cfg.speed
    mcfg = model_config(cfg)
    # 1. The model, from a seed of its own: the initial weights do not depend on how many
    # random numbers anything else drew first.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_from_string(f"alphafold_init_{cfg.seed}"))
        model = AlphaFold(mcfg).to(device)
    model.train()
    init_state = None
    if cfg.initialize_parameters_from is not None:
        init_state = load_reference_checkpoint(model, cfg.initialize_parameters_from)
    # 2. The evaluation copy before any speed-up touches the model; each copy gets its own
    # swaps. Evaluation runs at varying lengths: its glue is compiled only with
    # eval_compile_glue, its structure module only with eval_compile_structure_module,
    # both with dynamic shapes (one compile for every length bucket).
    # Both copies share one cache of weight casts, scoped to each forward's autocast
    # region (`autocast` below); the two never run a forward at the same time.
    weight_casts = WeightCasts() if speed.cached_weight_casts else None
    eval_speed = speed.for_evaluation(trains=not topo.is_eval_rank)
    eval_model = None
    if eval_copy:
        eval_model = copy.deepcopy(model).eval()
        apply_speedups(eval_model, eval_speed.for_evaluation_model(), cfg.precision,
                       weight_casts)
        if eval_speed.eval_template_pairs_once:
            reuse_template_pairs(eval_model)
        if eval_speed.eval_compile_glue:  # one compile for every length bucket
            compile_glue(eval_model, dynamic=True)
        if eval_speed.eval_compile_structure_module:
            compile_structure_module(eval_model, dynamic=True)
    apply_speedups(model, speed, cfg.precision, weight_casts)
    # 3. Parallelism.
    if topo.dap_group is not None:
        from scalefold.parallel import parallelize_dap

        # "scale": the average over all training ranks below (DAP peers included) makes
        # the scaled partial gradients exact.
        parallelize_dap(model, topo.dap_group, grad_reduction="scale",
                        overlap=speed.dap_overlap)
    forward_model: nn.Module = model
    grad_sync = None
    if speed.grad_sync != "ddp" and not topo.is_eval_rank:
        # Also on one rank, so that one GPU runs (and times) the multi-rank step (its
        # collectives over a process group of one under torchrun W = 1).
        if speed.grad_sync == "flat":
            grad_sync = FlatGradSync(topo.train_group, topo.num_train_ranks)
        else:
            grad_sync = BucketedGradSync(topo.train_group, topo.num_train_ranks)
    elif topo.num_train_ranks > 1 and not topo.is_eval_rank:
        # Heads whose loss weight is 0 (experimentally resolved) get no gradient, so
        # DDP must be told some parameters may not take part in a step.
        forward_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True, process_group=topo.train_group)
    # 4. Optimizer, schedule, loss, SWA.
    params = list(model.parameters())
    optimizer = make_adam(params, cfg.base_lr, device, fused=speed.fused_optimizer,
                          capturable=speed.cuda_graphs)
    lr_tensors = [g["lr"] for g in optimizer.param_groups if isinstance(g["lr"], torch.Tensor)]
    schedule = (
        LRSchedule.alphafold_pretraining() if cfg.lr_schedule == "alphafold" else
        LRSchedule(base_lr=cfg.base_lr, warmup_lr_init=cfg.warmup_lr_init,
                   warmup_iters=cfg.warmup_lr_iters)
    )
    loss_fn = AlphaFoldLoss(LossConfig.mlperf()).to(device)
    swa = WeightEMA(model, decay=cfg.swa_decay)

    @contextlib.contextmanager
    def autocast() -> Iterator[None]:
        with precision_context(cfg.precision, device.type, speed.blas), (
                weight_casts.scope() if weight_casts is not None else contextlib.nullcontext()):
            yield

    # 5. The step.
    # (not on evaluation ranks, which never step: it makes Adam's moments up front)
    single_pass = (SinglePassUpdate(params, optimizer, swa, model, cfg.gradient_clip_norm)
                   if speed.single_pass_update and not topo.is_eval_rank else None)
    step = TrainStep(forward_model, params, optimizer, loss_fn, swa, model,
                     cfg.gradient_clip_norm, fused=speed.fused_optimizer, autocast=autocast,
                     grad_sync=grad_sync, single_pass=single_pass)
    graphed = (GraphedTrainStep(step) if speed.cuda_graphs and not topo.is_eval_rank
               else None)
    built = BuiltStep(model_config=mcfg, model=model, eval_model=eval_model,
                      optimizer=optimizer, lr_tensors=lr_tensors, schedule=schedule, swa=swa,
                      step=step, graphed=graphed, autocast=autocast, eval_speed=eval_speed)
    # The MLPerf initial checkpoint is resumable: it carries Adam's state too.
    if init_state is not None and "optimizer_state_dict" in init_state:
        built.load_optimizer_state(init_state["optimizer_state_dict"])
    return built
