"""Typed configuration of a training run (the reference's train.py flags, as a dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Precision = Literal["fp32", "tf32", "bf16"]
LoaderType = Literal["InitialTrainingDataloaderPT", "InitialTrainingDataloaderPQ"]


@dataclass(frozen=True)
class MLPerfLogConfig:
    path: Path | None = None  # None: no MLPerf log
    division: Literal["closed", "open"] = "open"
    org: str = "ScaleFold"
    platform: str = "1xCPU"
    status: Literal["onprem", "cloud", "preview", "research"] = "research"


@dataclass(frozen=True)
class SpeedConfig:
    """Speed-ups applied from outside the model (`scalefold.train.step.apply_speedups`);
    measured in docs/PERFORMANCE.md. The defaults are plain PyTorch."""

    attention: Literal["eager", "sdpa", "triton"] = "eager"
    layer_norm: Literal["eager", "triton"] = "eager"
    # "compute": LayerNorm returns bf16 under bf16 autocast, so the residual streams stay
    # bf16; "fp32": PyTorch autocast's float32 LayerNorm output.
    layer_norm_output: Literal["fp32", "compute"] = "fp32"
    fused_optimizer: bool = False  # Adam(fused=True), clip folded in, no host sync
    compile_glue: bool = False  # torch.compile of transitions, OPM, triangle mult.
    compile_attention: bool = False  # ...and of the attention blocks' glue (with compile_glue)
    recompute_outer_product: bool = False  # recompute OuterProductMean in backward (memory)
    opm_projection_kernel: bool = False  # its projection reads the product in place (Triton)
    matvec_bias_grad: bool = False  # Linear bias gradients as dyᵀ·1 (scalefold.kernels.linear)
    trimul_channel_first: bool = False  # triangle multiplication without layout copies
    # ...and its output LayerNorm reading the channels-first product in place (Triton)
    trimul_norm_kernel: bool = False
    # ...and how its stacked projection's bias is applied (scalefold.kernels.trimul):
    # "baddbmm", "gate" (added with the gating), "gate_matvec" (its gradient a matvec)
    trimul_projection_bias: Literal["baddbmm", "gate", "gate_matvec"] = "baddbmm"
    attention_dq_kernel: bool = False  # Triton attention: dq from its own kernel, no atomics
    # Triton attention with a bias gradient: the backward stores dS once and reads it for dq
    # and the bias gradient, instead of recomputing the probabilities twice more
    attention_store_ds: bool = False
    fused_gate: bool = False  # x · sigmoid(g) gates as one Triton kernel each way
    # Parameters and gradients as views of two flat buffers: Adam, the gradient norm and
    # the SWA update each run over one tensor (scalefold.train.flat_params)
    flat_params: bool = False
    cuda_graphs: bool = False  # whole step captured per recycling count (CUDA only)
    # Data-parallel gradient averaging: "ddp" (DistributedDataParallel's bucketed hooks,
    # overlapped with backward) or "flat" (one all-reduce of a flat gradient buffer after
    # backward; what CUDA graphs use with several ranks).
    grad_sync: Literal["ddp", "flat"] = "ddp"

    def __post_init__(self) -> None:
        if self.trimul_norm_kernel and not (self.trimul_channel_first
                                            and self.layer_norm == "triton"):
            raise ValueError("trimul_norm_kernel needs trimul_channel_first and the Triton "
                             "LayerNorm")
        if self.trimul_projection_bias != "baddbmm" and not self.trimul_channel_first:
            raise ValueError("trimul_projection_bias needs trimul_channel_first")
        if self.compile_attention and not self.compile_glue:
            raise ValueError("compile_attention extends compile_glue: set both")
        if self.cuda_graphs and not self.fused_optimizer:
            raise ValueError("cuda_graphs needs fused_optimizer (the step must not "
                             "synchronise with the host)")

    @classmethod
    def fast(cls) -> SpeedConfig:
        """Everything measured to help on an H100/H200 (use with precision bf16). `compile_glue`
        only helps inside CUDA graphs (eager it measured slower in session 1);
        `compile_attention` measured +6 ms a step on top of it (session 5), so it stays out."""
        return cls(attention="triton", layer_norm="triton", layer_norm_output="compute",
                   fused_optimizer=True, cuda_graphs=True, matvec_bias_grad=True,
                   trimul_channel_first=True, trimul_norm_kernel=True,
                   attention_dq_kernel=True, attention_store_ds=True, fused_gate=True,
                   opm_projection_kernel=True,
                   compile_glue=True)


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path
    output_dir: Path
    # model
    preset: Literal["mlperf", "small", "tiny"] = "mlperf"
    precision: Precision = "tf32"
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    activation_checkpointing: bool = False
    initialize_parameters_from: Path | None = None
    # schedule
    seed: int = 1234567890
    num_train_iters: int = 2000
    local_batch_size: int = 1
    base_lr: float = 1e-3
    warmup_lr_init: float = 1e-5
    warmup_lr_iters: int = 0
    # "mlperf": warm-up then constant (the benchmark); "alphafold": AlphaFold2's schedule
    # for long runs from scratch (warm-up over 1000 steps, 5e-5 after 60k steps).
    lr_schedule: Literal["mlperf", "alphafold"] = "mlperf"
    gradient_clip_norm: float = 0.1
    swa_decay: float = 0.9
    use_clamped_fape_probability: float = 0.9
    # evaluation
    val_every_iters: int = 40
    num_async_eval_ranks: int = 0  # the last N ranks evaluate while the others train
    dap_size: int = 1  # ranks that share one sample (dynamic axial parallelism)
    target_avg_lddt_ca: float = 0.8
    train_chain_ids: tuple[str, ...] | None = None  # None: the release-date selection
    val_chain_ids: tuple[str, ...] | None = None  # None: the CAMEO selection
    # data
    crop_size: int = 256
    max_msa_clusters: int = 124
    max_extra_msa: int = 1024
    max_templates: int = 4
    num_recycling_iters: int = 3
    loader: LoaderType = "InitialTrainingDataloaderPT"
    num_workers: int = 2
    # checkpoints
    checkpoint_every_iters: int = 40
    keep_last_checkpoints: int = 2
    resume: bool = True
    # logging
    mlperf: MLPerfLogConfig = field(default_factory=MLPerfLogConfig)
    progress: bool | None = None  # None: a progress bar only on an interactive terminal

    def __post_init__(self) -> None:
        if self.val_every_iters <= 0 or self.num_train_iters <= 0:
            raise ValueError("val_every_iters and num_train_iters must be positive")
        if self.local_batch_size < 1:
            raise ValueError("local_batch_size must be >= 1")
