"""Typed configuration of a training run (the reference's train.py flags, as a dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

# Evaluation length buckets (residues; "off": each chain at its own length).
EvalBuckets = Literal["off", "16", "32", "64", "128"]
EvalConcurrentChains = Literal["1", "2", "3", "4"]
EvalChainsPerForward = Literal["1", "2", "4"]
# Chains up to this padded length are grouped (`eval_chains_per_forward`): the 224-residue
# profile's forward is ~19,000 launches of ~2.5 us (2026-12-06 perf-log section 9), a fixed
# cost that dominates short chains; longer ones fill the GPU alone.
GROUP_MAX_LENGTH = 256

Precision = Literal["fp32", "tf32", "bf16"]
LoaderType = Literal["InitialTrainingDataloaderPT", "InitialTrainingDataloaderPQ"]


@dataclass(frozen=True)
class MLPerfLogConfig:
    path: Path | None = None  # None: no MLPerf log
    division: Literal["closed", "open"] = "open"
    org: str = "ScaleFold"
    platform: str = "1xCPU"
    status: Literal["onprem", "cloud", "preview", "research"] = "research"


def _opt(default, help: str):  # noqa: A002 - the argparse word
    """A SpeedConfig field with its `scalefold train` help text (the flag is made from it)."""
    return field(default=default, metadata={"help": help})


# grad_sync="bucketed": the flat gradient buffer's bucket size, DDP's default
# (`bucket_cap_mb=25`): large enough that a collective's fixed latency is small against
# its bytes, small enough that the first bucket is ready early in backward.
GRAD_BUCKET_BYTES = 25 * 2**20


# The fields `eval_no_grad_kernels` turns on in the evaluation copy: kernels for forwards
# without gradients, each measured faster in the evaluation and not yet in the training
# step (`SpeedConfig.for_evaluation_model`).
EVAL_NO_GRAD_KERNELS = ("trimul_projection_forward_kernel", "transition_relu_epilogue",
                        "ln_projection_forward_kernel", "attention_gate_epilogue",
                        "triangle_attention_folded_mask", "transition_forward_kernel",
                        "attention_bias_mma", "attention_half_key_blocks",
                        "opm_residual_epilogue")


@dataclass(frozen=True)
class SpeedConfig:
    """How the training step is computed: speed-ups applied from outside the model.

    The single definition of the speed-ups: `scalefold train` makes one flag per field
    (`--attention`, `--cuda-graphs/--no-cuda-graphs`, ...), `bench step` variants are a
    preset plus field overrides, and `systems/config_*.sh` name a preset. The defaults
    are plain PyTorch; `PRESETS` holds the measured recipes (docs/PERFORMANCE.md).
    """

    attention: Literal["eager", "sdpa", "triton"] = _opt(
        "eager", "attention implementation (triton: flash-attention kernels with biases)")
    attention_dq_kernel: bool = _opt(
        False, "Triton attention: dq from its own kernel instead of fp32 atomics")
    attention_store_ds: bool = _opt(
        False, "Triton attention: where a bias needs a gradient, the backward stores dS "
               "once and reads it for dq and the bias gradient")
    attention_precomputed_delta: bool = _opt(
        False, "Triton attention: the backward's rowsum(dO·O) computed once per row by a "
               "kernel of its own, not again in every block of the backward kernels")
    attention_fused_logits: bool = _opt(
        False, "Triton attention: the biases as q kᵀ's accumulator and exponentials as "
               "exp2 of a fused multiply-add (fewer operations a score element)")
    attention_ds_dq_kernel: bool = _opt(
        False, "Triton attention: with the stored dS, dq = dS·k·scale from one kernel reading "
               "k and writing dq in their layouts (no copy of k, no scale or layout pass)")
    attention_unmasked_loads: bool = _opt(
        False, "Triton attention: loops over full blocks load without bounds, the partial "
               "last block after them with bounds (the same arithmetic; on sm90 the compiled "
               "code rounds a few values differently)")
    attention_bias_mma: bool = _opt(
        False, "Triton attention, with attention_fused_logits: the forward takes a 16-bit bias "
               "tile as an MMA operand (identity times tile), so its loads are pipelined into "
               "shared memory like k and v instead of waited for in every iteration")
    attention_bias_tma: bool = _opt(
        False, "Triton attention, with attention_fused_logits: the forward loads a 16-bit bias "
               "tile with contiguous keys (the folded triangle bias) through a TMA tensor "
               "descriptor, pipelined like k and v, instead of attention_bias_mma's identity "
               "product (sm90 or later)")
    attention_pipelined_bias_loads: bool = _opt(
        False, "Triton attention: the forward's loop loads its bias rows and tiles stages "
               "ahead (its stages given to Triton's pipeliner, which otherwise takes only the "
               "matrix operands' loads), the tile as a plain load instead of "
               "attention_bias_mma's identity product")
    attention_bwd_pipelined_loads: bool = _opt(
        False, "Triton attention: the dk/dv kernel's loop with at least 2 stages given to "
               "Triton's pipeliner, which then loads the bias tile and the log-sum-exp and "
               "delta rows a block ahead, not only q and dO")
    attention_half_key_blocks: bool = _opt(
        False, "Triton attention: keys an odd multiple of 32 up to 352 (evaluation lengths) "
               "run the forward with 32-key blocks, every block full, instead of 64-key "
               "blocks with a half-empty last one")
    layer_norm: Literal["eager", "triton"] = _opt("eager", "LayerNorm implementation")
    layer_norm_bwd_stream: bool = _opt(
        False, "Triton LayerNorm: the backward as 528 programs streaming blocks of 2,048 "
               "elements, the next block's loads issued before this block's arithmetic and "
               "dweight/dbias summed once after the loop (today's: one block a program, "
               "a cross-warp sum in every iteration)")
    layer_norm_output: Literal["fp32", "compute"] = _opt(
        "fp32", "LayerNorm output dtype under autocast: compute = bf16, so the residual "
                "streams stay bf16 (fp32: PyTorch autocast's)")
    fused_optimizer: bool = _opt(
        False, "fused Adam with the gradient clip folded in and no host synchronisation")
    single_pass_update: bool = _opt(
        False, "with fused_optimizer: the gradient clip, Adam and the SWA (EMA) update of "
               "all ~5,000 parameter tensors as two Triton launches over a table of their "
               "addresses, not PyTorch's multi-tensor kernels (at most 36 tensors a launch)")
    cuda_graphs: bool = _opt(
        False, "the whole step captured as CUDA graphs, one per recycling count, at "
               "initialisation (CUDA only; needs fused_optimizer)")
    compile_glue: bool = _opt(
        False, "torch.compile of transitions, outer product mean and triangle "
               "multiplication (pays inside CUDA graphs)")
    matvec_bias_grad: bool = _opt(False, "Linear bias gradients as a matrix-vector product")
    cached_weight_casts: bool = _opt(
        False, "with matvec_bias_grad or the stacked projections under bf16: the "
               "weights those cast by hand cast (or stacked) once per forward without "
               "gradients (autocast region), not once per call and recycling iteration; "
               "each mask's attention bias once per forward, not once per attention")
    attention_stacked_projections: bool = _opt(
        False, "self-attention's query, key, value and gate projections as one matmul "
               "against the stacked weights (one read of the input; one GEMM for its "
               "gradient)")
    trimul_channel_first: bool = _opt(
        False, "triangle multiplication computed channels-first (no layout copies)")
    trimul_norm_kernel: bool = _opt(
        False, "with trimul_channel_first and the Triton LayerNorm: its output LayerNorm "
               "reads the channels-first product in place")
    trimul_contiguous_grads: bool = _opt(
        False, "with trimul_channel_first: the triangle product's backward returns both "
               "gradients contiguous (autograd's gives one as a transposed view)")
    trimul_bias_in_gating: bool = _opt(
        False, "with trimul_channel_first, in compiled forwards without gradients "
               "(recycling iterations, evaluation): the stacked projection a plain matmul, "
               "its bias added in the fused gating instead of copied into the output first "
               "by baddbmm")
    trimul_gating_kernel: bool = _opt(
        False, "with trimul_channel_first, in forwards with gradients: the gating's "
               "backward and the stacked projection's bias gradient as one Triton kernel")
    trimul_projection_forward_kernel: bool = _opt(
        False, "with trimul_channel_first, in forwards without gradients: the four input "
               "projections and their gating as one Triton kernel (the stacked projection "
               "never written out)")
    opm_projection_kernel: bool = _opt(
        False, "the outer product mean's projection reads the product in its matmul's "
               "layout (Triton)")
    opm_residual_epilogue: bool = _opt(
        False, "with opm_projection_kernel, in forwards without gradients: the outer "
               "product mean's division by the pairs' count and its add to the pair "
               "stream in the projection kernel's epilogue")
    recompute_outer_product: bool = _opt(
        False, "recompute the outer product mean in backward: -6.5 GiB at the benchmark's "
               "shapes for about 1 percent more time (what an 80 GB GPU needs)")
    fused_gate: bool = _opt(False, "sigmoid gates as one Triton kernel each way")
    transition_relu_epilogue: bool = _opt(
        False, "forwards without gradients (recycling iterations, evaluation): each "
               "transition's bias and ReLU in its first matmul's cuBLASLt epilogue "
               "instead of a ReLU kernel over the hidden activations")
    attention_gate_epilogue: bool = _opt(
        False, "forwards without gradients: each gated attention's sigmoid gate applied in "
               "the Triton attention kernel's epilogue, not by a gate kernel that reads and "
               "writes its output again (needs attention='triton')")
    ln_projection_forward_kernel: bool = _opt(
        False, "forwards without gradients: each LayerNorm and the projections it feeds "
               "(transitions' first layer, MSA and triangle attentions' stacked q/k/v/g, "
               "the pair and triangle biases, the outer product mean's a and b, the "
               "triangle multiplications' projections and output) as one Triton kernel, "
               "the normalised activations never written; projections wider than 512 "
               "columns stay LayerNorm then matmul; and the triangle multiplications' "
               "and attentions' residual adds (and the former's gate) in their output "
               "projection's epilogue (needs attention_stacked_projections)")
    transition_forward_kernel: bool = _opt(
        False, "forwards without gradients: each narrow transition (c <= 128: pair, "
               "extra-MSA, template) and its residual add as one Triton kernel, the "
               "hidden activations and the update never written (2 passes over the stream "
               "instead of 13)")
    triangle_attention_folded_mask: bool = _opt(
        False, "forwards without gradients: each triangle attention's key mask folded "
               "into its triangle bias (the bias's contiguous copy), so the attention "
               "kernel takes one bias, not a mask row and a bias tile (11.7 percent fewer "
               "instructions in its loop); the same values at every real position, to the "
               "kernel's rounding")
    triangle_attention_fp32_bias: bool = _opt(
        False, "with triangle_attention_folded_mask: the folded bias written in fp32 (the "
               "same values), so that attention_pipelined_bias_loads loads it without a "
               "conversion a value (bias_mma and bias_tma take 16-bit tiles only)")
    fused_residual_dropout: bool = _opt(
        False, "each residual update r + dropout(x) of the Evoformer and template stacks as "
               "one Triton kernel each way, bit-identical to the plain module (bf16/fp16)")
    dap_overlap: bool = _opt(
        False, "under DAP: each block's MSA all-to-all runs behind its pair updates (and "
               "its adjoint behind their backward) instead of after them")
    grad_sync: Literal["ddp", "flat", "bucketed"] = _opt(
        "ddp", "data-parallel gradient averaging: DDP's bucketed hooks; one flat "
               "all-reduce after backward (CUDA graphs: backward and update as two graphs "
               "around it); or the flat buffer's buckets all-reduced from inside backward "
               "as their gradients are ready (CUDA graphs: one graph, collectives captured)")
    blas: Literal["cublas", "cublaslt"] = _opt(
        "cublas", "the library PyTorch hands every matmul to on CUDA (cublaslt: cuBLASLt "
                  "and its heuristics for all of them, not only for the matmuls with a bias "
                  "epilogue; other split-K and tile choices for the weight gradients' "
                  "K = N² reductions)")
    input_copy_stream: bool = _opt(
        False, "each training batch (and evaluation chain) copied to the GPU on a stream "
               "of its own while the previous step (chain) runs, not between the two on the "
               "compute stream (CUDA)")
    compile_structure_module: bool = _opt(
        False, "torch.compile of one structure-module layer, run for all eight, in the "
               "training model (static shapes): the module's ~2,000 small operations a "
               "forward (the evaluation copy keeps it eager: no gain measured there)")
    eval_length_buckets: EvalBuckets = _opt(
        "off", "evaluation: pad each chain to a multiple of this many residues (masked: the "
               "same lDDT-Ca), so chains of nearby lengths share one shape and its graph")
    eval_cuda_graphs: bool = _opt(
        False, "evaluation: the forward captured as one CUDA graph per padded length, at "
               "its first use (CUDA only; with eval_length_buckets, one per bucket)")
    eval_compile_glue: bool = _opt(
        False, "evaluation: compile_glue's torch.compile for the evaluation copy too, with "
               "dynamic shapes: one compile serves every chain length")
    eval_compile_structure_module: bool = _opt(
        False, "evaluation, with eval_compile_glue: the structure module's layer compiled "
               "with dynamic shapes too, for its ~2,300 launches a forward")
    eval_no_grad_kernels: bool = _opt(
        False, "evaluation copy: the no-gradient kernels (" + ", ".join(EVAL_NO_GRAD_KERNELS)
               + "), whether or not the training model uses them")
    eval_template_pairs_once: bool = _opt(
        False, "evaluation: the template pair stack run once per chain, not once per "
               "recycling iteration (no dropout; the template features repeat over the "
               "iterations, checked per chain): the same bits")
    eval_concurrent_chains: EvalConcurrentChains = _opt(
        "1", "evaluation, with eval_cuda_graphs: this many chains run at once, each queued "
             "by a host thread of its own on a stream of its own with its own graphs and "
             "memory pool, so that the kernels of one fill the gaps between another's (each "
             "lane costs the graphs' memory and capture once more)")
    eval_chains_per_forward: EvalChainsPerForward = _opt(
        "1", "evaluation, with eval_length_buckets: chains of one bucket up to "
             f"{GROUP_MAX_LENGTH} residues stacked this many at a time into one forward's "
             "batch (the others, and a bucket's last few, alone), so that a group pays the "
             "~19,000 kernel launches a chain's forward makes once: short chains' kernels "
             "are latency-bound; each grouped bucket is one shape more to capture")
    eval_warm_up: bool = _opt(
        False, "evaluation: the first-time work (Triton autotuning, graph capture) of every "
               "length bucket up to the validation set's 700 residues, on synthetic chains "
               "during initialisation, before run_start (needs eval_length_buckets)")
    eval_plain_beside_training: bool = _opt(
        False, "on ranks that also train (synchronous evaluation): evaluate each chain at "
               "its own length without the four levers that hold memory (length buckets, "
               "evaluation graphs, their warm-up, the compiled glue), which do not fit "
               "beside the training step's graphs on an 80 GB GPU; ranks that only "
               "evaluate (--num-async-eval-ranks) keep them")

    def for_evaluation(self, trains: bool) -> SpeedConfig:
        """The evaluation levers of a rank: these, or on a rank that also trains (`trains`)
        with `eval_plain_beside_training`, the plain evaluation."""
        if not (trains and self.eval_plain_beside_training):
            return self
        return replace(self, eval_length_buckets="off", eval_cuda_graphs=False,
                       eval_warm_up=False, eval_compile_glue=False,
                       eval_compile_structure_module=False,
                       eval_concurrent_chains="1", eval_chains_per_forward="1",
                       eval_plain_beside_training=False)

    def for_evaluation_model(self) -> SpeedConfig:
        """The model-side speed-ups of the evaluation copy: the training model's without
        its static-shape compiles (the copy's compile follows eval_compile_glue), and
        under `eval_no_grad_kernels` the no-gradient kernels (`EVAL_NO_GRAD_KERNELS`),
        each measured faster in the evaluation (docs/evidence/2026-12-05_h200_s4,
        2026-12-06_h100_s21, _s22, _s23, _s24, _s25); in the training step's recycling
        iterations they await the 5-seed check."""
        extra = {}
        if self.eval_no_grad_kernels:
            extra = dict.fromkeys(EVAL_NO_GRAD_KERNELS, True)
        return replace(self, compile_glue=False, compile_structure_module=False, **extra)

    def __post_init__(self) -> None:
        for f in ("attention_bias_mma", "attention_bias_tma", "eval_no_grad_kernels"):
            if getattr(self, f) and not self.attention_fused_logits:
                raise ValueError(f"{f} needs attention_fused_logits (the bias tile loaded "
                                 "that way starts the logits' accumulator there)")
        if self.triangle_attention_fp32_bias and not (self.triangle_attention_folded_mask
                                                      or self.eval_no_grad_kernels):
            raise ValueError("triangle_attention_fp32_bias needs triangle_attention_folded_mask "
                             "(or eval_no_grad_kernels, which turns it on in the evaluation)")
        for f in ("opm_residual_epilogue", "eval_no_grad_kernels"):
            if getattr(self, f) and not self.opm_projection_kernel:
                raise ValueError(f"{f} needs opm_projection_kernel (the outer product "
                                 "mean's epilogue extends its projection kernel)")
        if self.layer_norm_bwd_stream and self.layer_norm != "triton":
            raise ValueError("layer_norm_bwd_stream needs the Triton LayerNorm "
                             "(layer_norm='triton')")
        if self.trimul_norm_kernel and not (self.trimul_channel_first
                                            and self.layer_norm == "triton"):
            raise ValueError("trimul_norm_kernel needs trimul_channel_first and the Triton "
                             "LayerNorm")
        for f in ("trimul_contiguous_grads", "trimul_bias_in_gating", "trimul_gating_kernel",
                  "trimul_projection_forward_kernel", "eval_no_grad_kernels"):
            if getattr(self, f) and not self.trimul_channel_first:
                raise ValueError(f"{f} needs trimul_channel_first")
        for f in ("ln_projection_forward_kernel", "eval_no_grad_kernels"):
            if getattr(self, f) and not self.attention_stacked_projections:
                raise ValueError(f"{f} needs attention_stacked_projections (the LayerNorm "
                                 "fuses into the stacked q/k/v/g projection)")
        if self.eval_no_grad_kernels and self.attention != "triton":
            raise ValueError("eval_no_grad_kernels needs attention='triton' (the gate in "
                             "the attention kernel's epilogue)")
        if self.single_pass_update and not self.fused_optimizer:
            raise ValueError("single_pass_update needs fused_optimizer")
        if self.cuda_graphs and not self.fused_optimizer:
            raise ValueError("cuda_graphs needs fused_optimizer (the step must not "
                             "synchronise with the host)")
        if self.eval_compile_structure_module and not self.eval_compile_glue:
            raise ValueError("eval_compile_structure_module needs eval_compile_glue (the "
                             "evaluation's dynamic-shape compiles)")
        if self.eval_concurrent_chains != "1" and not self.eval_cuda_graphs:
            raise ValueError("eval_concurrent_chains needs eval_cuda_graphs (a lane's "
                             "first-time work is its captures, done before the pass; eager "
                             "forwards on several threads would compile and autotune at once)")
        if self.eval_chains_per_forward != "1" and self.eval_length_buckets == "off":
            raise ValueError("eval_chains_per_forward needs eval_length_buckets: only chains "
                             "padded to one bucket stack into one batch")
        if self.eval_warm_up and self.eval_length_buckets == "off":
            raise ValueError("eval_warm_up needs eval_length_buckets: without buckets every "
                             "length up to 700 residues is a shape of its own")
        flash_fields = ("attention_dq_kernel", "attention_store_ds", "attention_fused_logits",
                        "attention_precomputed_delta", "attention_unmasked_loads",
                        "attention_ds_dq_kernel", "attention_gate_epilogue",
                        "attention_bias_mma", "attention_bias_tma",
                        "attention_pipelined_bias_loads", "attention_bwd_pipelined_loads",
                        "attention_half_key_blocks")
        if any(getattr(self, f) for f in flash_fields) and self.attention != "triton":
            raise ValueError(f"{', '.join(flash_fields)} need attention='triton'")

    @classmethod
    def preset(cls, name: str) -> SpeedConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown speed preset {name!r}; known: {sorted(PRESETS)}")
        return PRESETS[name].speed


@dataclass(frozen=True)
class SpeedPreset:
    speed: SpeedConfig
    precision: Precision | None  # what the preset is measured with (None: any)
    help: str


_H200 = SpeedConfig(
    attention="triton", attention_dq_kernel=True, attention_store_ds=True,
    layer_norm="triton", layer_norm_output="compute", fused_optimizer=True,
    cuda_graphs=True, compile_glue=True, matvec_bias_grad=True, cached_weight_casts=True,
    attention_stacked_projections=True, trimul_channel_first=True,
    trimul_norm_kernel=True, trimul_contiguous_grads=True, opm_projection_kernel=True,
    fused_gate=True, fused_residual_dropout=True, eval_length_buckets="16",
    eval_cuda_graphs=True, eval_warm_up=True, eval_template_pairs_once=True,
    input_copy_stream=True, eval_compile_glue=True, compile_structure_module=True,
    attention_fused_logits=True, attention_precomputed_delta=True,
    attention_unmasked_loads=True, attention_ds_dq_kernel=True, trimul_bias_in_gating=True,
    trimul_gating_kernel=True, single_pass_update=True, layer_norm_bwd_stream=True,
    eval_no_grad_kernels=True, eval_compile_structure_module=True, eval_chains_per_forward="2",
)
PRESETS: dict[str, SpeedPreset] = {
    "eager": SpeedPreset(SpeedConfig(), None, "plain PyTorch"),
    "h200": SpeedPreset(_H200, "bf16", "bf16 with every speed-up measured to help"),
    # The evaluation graphs' memory pool (16 GiB reserved over the 180 chains with
    # 32-residue buckets, 24 GiB with 16: an H100, docs/evidence/2026-12-05_h100_s3)
    # does not fit beside the training step's 70.4 GiB on an 80 GB GPU. Without the
    # warm-up (which needs buckets), the evaluation glue's compile (~44 s on the H200) would
    # fall inside the timed run, and its gain is measured only with graphs. A rank that
    # only evaluates holds no training step: there all of h200's evaluation levers fit.
    # PyTorch's fused Adam, not the single-pass update: the single pass's peak on an 80 GB
    # GPU beside synchronous evaluation is not measured, and the one H200 measurement
    # (+0.8 GiB, docs/PERFORMANCE.md) would leave it under 1 GiB to spare.
    "h100": SpeedPreset(replace(_H200, recompute_outer_product=True,
                                eval_plain_beside_training=True, single_pass_update=False),
                        "bf16",
                        "h200 with the outer product mean recomputed, PyTorch's fused Adam "
                        "and, on ranks that also train, evaluation without graphs (fits "
                        "80 GB)"),
}


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path
    output_dir: Path
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA where there is one
    # model
    preset: Literal["mlperf", "small", "tiny"] = "mlperf"
    precision: Precision = "tf32"
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    activation_checkpointing: bool = False
    initialize_parameters_from: Path | None = None
    # schedule
    seed: int | None = 1234567890  # None: rank 0 draws one and every rank uses it
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
    # checkpoints: off by default (a benchmark run times nothing else); when on, they are
    # copied to host memory at the step boundary and written by a background thread
    checkpoint_every_iters: int = 0  # 0: none
    keep_last_checkpoints: int = 2
    checkpoint_dir: Path | None = None  # None: output_dir/checkpoints
    checkpoint_on_stop: bool = False  # also write one when a signal stops the run
    # None: a fresh run (an output directory holding checkpoints is refused); "latest":
    # continue from the newest checkpoint of checkpoint_dir; else a checkpoint file
    resume: str | None = None
    # logging
    mlperf: MLPerfLogConfig = field(default_factory=MLPerfLogConfig)
    progress: bool | None = None  # None: a progress bar only on an interactive terminal

    @property
    def checkpoints(self) -> Path:
        return Path(self.checkpoint_dir or Path(self.output_dir) / "checkpoints")

    def __post_init__(self) -> None:
        if self.checkpoint_every_iters < 0:
            raise ValueError("checkpoint_every_iters must be >= 0 (0: no checkpoints)")
        if self.val_every_iters <= 0 or self.num_train_iters <= 0:
            raise ValueError("val_every_iters and num_train_iters must be positive")
        if self.local_batch_size < 1:
            raise ValueError("local_batch_size must be >= 1")
