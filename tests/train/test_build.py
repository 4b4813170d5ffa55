"""One step builder and one precision policy (`scalefold.train.build`)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import torch

from scalefold.train import build
from scalefold.train.build import build_step, check_supported, precision_context
from scalefold.train.config import SpeedConfig, TrainConfig
from scalefold.train.topology import Topology

PACKAGE = Path(build.__file__).resolve().parents[1]
ONE_RANK = Topology(rank=0, world_size=1, num_eval_ranks=0)


def _sources():
    return {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*.py")}


def _callers(name: str) -> set[str]:
    """Package modules that call `name` (as `name(...)` or `x.name(...)`)."""
    found = set()
    for mod, text in _sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
                if called == name:
                    found.add(mod)
    return found


@pytest.mark.parametrize("name", [
    "TrainStep", "GraphedTrainStep", "make_adam", "apply_speedups", "parallelize_dap",
    "DistributedDataParallel", "FlatGradSync", "BucketedGradSync", "WeightEMA", "AlphaFoldLoss", "LRSchedule",
])
def test_only_the_builder_constructs_step_parts(name):
    """`grep` finds one step builder: nothing else in the package builds these."""
    assert _callers(name) <= {"train/build.py"}, _callers(name)
    assert "train/build.py" in _callers(name)


def test_one_tf32_policy():
    setters = [name for name, text in _sources().items()
               if re.search(r"allow_tf32\s*=(?!=)", text)]
    # bench/step.py only puts back the flags it found after a run of variants.
    assert set(setters) <= {"train/build.py", "bench/step.py"}, setters
    assert "saved_tf32" in _sources()["bench/step.py"]


@pytest.mark.parametrize("precision,expect", [("fp32", False), ("tf32", True), ("bf16", False)])
def test_precision_context(precision, expect):
    ctx = precision_context(precision, "cpu")
    assert torch.backends.cuda.matmul.allow_tf32 is expect
    assert torch.backends.cudnn.allow_tf32 is expect
    with ctx:
        assert torch.is_autocast_enabled("cpu") is (precision == "bf16")


def test_precision_context_leaves_the_blas_library_off_cuda():
    saved = torch.backends.cuda.preferred_blas_library()
    precision_context("bf16", "cpu", "cublaslt")  # not a CUDA forward: untouched
    assert torch.backends.cuda.preferred_blas_library() == saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build and GPU")
def test_precision_context_sets_the_blas_library_on_cuda():
    saved = torch.backends.cuda.preferred_blas_library()
    try:
        precision_context("bf16", "cuda", "cublaslt")
        assert torch.backends.cuda.preferred_blas_library() == torch._C._BlasBackend.Cublaslt
        precision_context("bf16", "cuda", "cublas")
        assert torch.backends.cuda.preferred_blas_library() == torch._C._BlasBackend.Cublas
    finally:
        torch.backends.cuda.preferred_blas_library(saved)


def test_trainer_and_bench_build_the_same_step(monkeypatch, mini_dataset, tmp_path):
    """`scalefold train` and `bench step` get their step from `build_step`, with the same
    settings for the same preset (the bench's config differs only in where data would be)."""
    from scalefold.bench import step as bench_step
    from scalefold.train import trainer as trainer_mod
    from scalefold.train.distributed import discover

    calls: list[tuple[str, TrainConfig]] = []

    def spy(who):
        def wrapped(cfg, device, topo, **kw):
            calls.append((who, cfg))
            return build_step(cfg, device, topo, **kw)
        return wrapped

    monkeypatch.setattr(trainer_mod, "build_step", spy("trainer"))
    monkeypatch.setattr(bench_step, "build_step", spy("bench"))
    speed = SpeedConfig(fused_optimizer=True, matvec_bias_grad=True, fused_gate=True)
    cfg = TrainConfig(data_dir=mini_dataset[0], output_dir=tmp_path, preset="tiny",
                      precision="bf16", speed=speed, seed=5)
    trainer_mod.Trainer(cfg, discover({}), torch.device("cpu"))
    variant = bench_step.parse_variant("eager@bf16+fused_optimizer+matvec_bias_grad+fused_gate")
    runner = bench_step.StepRunner(bench_step.step_config("tiny", variant, 5),
                                   torch.device("cpu"))
    assert [who for who, _ in calls] == ["trainer", "bench"]
    (_, a), (_, b) = calls
    differ = [f.name for f in dataclasses.fields(TrainConfig)
              if getattr(a, f.name) != getattr(b, f.name)]
    assert set(differ) <= {"data_dir", "output_dir"}, differ
    assert runner.train_step.max_grad_norm == 0.1 and runner.built.swa.decay == 0.9


def test_unsupported_combinations_are_refused_before_building(tmp_path):
    def cfg(**speed):
        return TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny",
                           speed=SpeedConfig(**speed))

    with pytest.raises(ValueError, match="CUDA device"):
        check_supported(cfg(fused_optimizer=True, cuda_graphs=True), torch.device("cpu"),
                        ONE_RANK)
    two = Topology(rank=0, world_size=2, num_eval_ranks=0)
    with pytest.raises(ValueError, match="grad_sync='flat'"):
        check_supported(cfg(fused_optimizer=True, cuda_graphs=True), torch.device("cuda"), two)
    for sync in ("flat", "bucketed"):
        check_supported(cfg(fused_optimizer=True, cuda_graphs=True, grad_sync=sync),
                        torch.device("cuda"), two)
    dap = Topology(rank=0, world_size=2, num_eval_ranks=0, dap_size=2, dap_group=object())
    with pytest.raises(ValueError, match="DAP"):
        check_supported(cfg(compile_glue=True), torch.device("cpu"), dap)
    with pytest.raises(ValueError, match="dap_overlap"):
        check_supported(cfg(fused_optimizer=True, cuda_graphs=True, grad_sync="flat",
                            dap_overlap=True), torch.device("cuda"), dap)
    check_supported(cfg(dap_overlap=True), torch.device("cpu"), dap)


def test_bench_step_has_no_step_of_its_own():
    text = _sources()["bench/step.py"]
    assert "build_step(" in text and "make_adam" not in text and "AlphaFold(" in text


def test_eval_compile_glue_compiles_only_the_evaluation_copys_glue(tmp_path):
    """The evaluation copy's glue modules are compiled (with dynamic shapes: one compile
    for every length), the training model's are not."""
    from scalefold.kernels.glue import GLUE_MODULES

    speed = SpeedConfig(eval_length_buckets="64", eval_compile_glue=True)
    cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny", speed=speed)
    built = build_step(cfg, torch.device("cpu"), ONE_RANK)
    glue = [m for m in built.eval_model.modules() if isinstance(m, GLUE_MODULES)]
    assert glue and all(m._compiled_call_impl is not None for m in glue)
    assert all(m._compiled_call_impl is None for m in built.model.modules()
               if isinstance(m, GLUE_MODULES))
    # compile_structure_module compiles the training model's structure-module layer only,
    # with or without the evaluation glue compiled
    for eval_glue in (False, True):
        speed = SpeedConfig(compile_structure_module=True, eval_compile_glue=eval_glue)
        cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny", speed=speed)
        built = build_step(cfg, torch.device("cpu"), ONE_RANK)
        assert _layer_compiled(built.model.structure_module)
        assert not _layer_compiled(built.eval_model.structure_module)


def test_eval_no_grad_kernels_swap_only_the_evaluation_copy(tmp_path):
    """`eval_no_grad_kernels` (h200): the evaluation copy's triangle multiplications
    project and gate in one kernel, its transitions take the ReLU epilogue (the wide one)
    or the fused transition (the narrow ones), its LayerNorms fuse into their narrow
    projections, its attentions gate in the kernel's epilogue and its triangle attentions
    fold their key mask into the bias, and its outer product means add their update in
    the projection kernel's epilogue; the training model keeps the plain forms, unless
    its own fields ask for them. The field needs the channels-first triangle
    multiplication, the stacked attention projections, the Triton attention and the outer
    product mean's projection kernel, and survives the plain evaluation beside training
    (the kernels hold no memory)."""
    from scalefold.kernels import ChannelFirstTriangleMultiplication, EpilogueReluTransition
    from scalefold.kernels.cores import TritonAttentionCore
    from scalefold.kernels.fused_transition import FusedTransition
    from scalefold.kernels.gated_attention import GateEpilogueAttention
    from scalefold.kernels.key_mask import FoldedKeyMaskTriangleAttention
    from scalefold.kernels.ln_linear import NormFusedTransition
    from scalefold.kernels.opm import EpilogueOuterProductMean
    from scalefold.train.config import EVAL_NO_GRAD_KERNELS

    def kernels(model):
        tri = [m for m in model.modules() if isinstance(m, ChannelFirstTriangleMultiplication)]
        assert tri
        flash = [m.config for m in model.modules() if isinstance(m, TritonAttentionCore)]
        assert flash
        return (all(m.forward_projection_kernel for m in tri),
                *(any(isinstance(m, kind) for m in model.modules())
                  for kind in (EpilogueReluTransition, NormFusedTransition,
                               GateEpilogueAttention, FoldedKeyMaskTriangleAttention,
                               FusedTransition, EpilogueOuterProductMean)),
                all(f is not None and f.bias_mma for f in flash))

    base = dict(trimul_channel_first=True, attention="triton",
                attention_stacked_projections=True, attention_fused_logits=True,
                opm_projection_kernel=True)
    for field, own in ((False, False), (True, False), (True, True), (False, True)):
        speed = SpeedConfig(**base, eval_no_grad_kernels=field,
                            **dict.fromkeys(EVAL_NO_GRAD_KERNELS, own))
        cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny", speed=speed)
        built = build_step(cfg, torch.device("cpu"), ONE_RANK)
        assert kernels(built.eval_model) == (field or own,) * 8
        assert kernels(built.model) == (own,) * 8
    for missing in ("trimul_channel_first", "attention_stacked_projections", "attention",
                    "attention_fused_logits", "opm_projection_kernel"):
        bad = {**base, missing: getattr(SpeedConfig(), missing)}
        with pytest.raises(ValueError, match="eval_no_grad_kernels needs"):
            SpeedConfig(**bad, eval_no_grad_kernels=True)
    h100 = SpeedConfig.preset("h100")
    assert h100.eval_no_grad_kernels and h100.for_evaluation(trains=True).eval_no_grad_kernels


def test_triangle_attention_fp32_bias_reaches_the_folded_modules(tmp_path):
    """`triangle_attention_fp32_bias`: the evaluation copy's folded triangle attentions
    write their bias in fp32 (the training model folds none); the field needs a folded
    mask somewhere."""
    from scalefold.kernels.key_mask import FoldedKeyMaskTriangleAttention

    base = dict(trimul_channel_first=True, attention="triton",
                attention_stacked_projections=True, attention_fused_logits=True,
                opm_projection_kernel=True, eval_no_grad_kernels=True)
    for on in (False, True):
        speed = SpeedConfig(**base, triangle_attention_fp32_bias=on)
        cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny", speed=speed)
        built = build_step(cfg, torch.device("cpu"), ONE_RANK)
        folded = [m for m in built.eval_model.modules()
                  if isinstance(m, FoldedKeyMaskTriangleAttention)]
        assert folded and all(m.folded_dtype == (torch.float32 if on else None)
                              for m in folded)
        assert not any(isinstance(m, FoldedKeyMaskTriangleAttention)
                       for m in built.model.modules())
    with pytest.raises(ValueError, match="triangle_attention_fp32_bias needs"):
        SpeedConfig(triangle_attention_fp32_bias=True)


def test_eval_compile_structure_module_compiles_the_evaluation_copys_layer(tmp_path):
    """`eval_compile_structure_module`: the evaluation copy's structure-module layer is
    compiled (dynamic shapes), the training model's only under its own field; the field
    needs the compiled glue and the plain evaluation beside training drops it."""
    for train_field in (False, True):
        speed = SpeedConfig(eval_length_buckets="16", eval_compile_glue=True,
                            eval_compile_structure_module=True,
                            compile_structure_module=train_field)
        cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny", speed=speed)
        built = build_step(cfg, torch.device("cpu"), ONE_RANK)
        assert _layer_compiled(built.eval_model.structure_module)
        assert _layer_compiled(built.model.structure_module) == train_field
    with pytest.raises(ValueError, match="eval_compile_structure_module needs"):
        SpeedConfig(eval_compile_structure_module=True)
    beside = dataclasses.replace(speed, eval_plain_beside_training=True)
    assert not beside.for_evaluation(trains=True).eval_compile_structure_module


def test_plain_evaluation_beside_training_only_on_ranks_that_train(tmp_path):
    """`eval_plain_beside_training` (h100): a rank that trains evaluates without the
    levers that hold memory; a rank that only evaluates keeps them, compiled glue and
    the evaluator's buckets included."""
    from scalefold.kernels.glue import GLUE_MODULES
    from scalefold.train.evaluate import Evaluator

    speed = SpeedConfig(eval_length_buckets="16", eval_compile_glue=True,
                        eval_plain_beside_training=True)
    cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny", speed=speed)
    eval_rank = Topology(rank=1, world_size=2, num_eval_ranks=1)
    for topo, levers in ((ONE_RANK, False), (eval_rank, True)):
        built = build_step(cfg, torch.device("cpu"), topo)
        assert built.eval_speed == speed.for_evaluation(trains=not levers)
        assert (built.eval_speed.eval_length_buckets == "16") is levers
        glue = [m for m in built.eval_model.modules() if isinstance(m, GLUE_MODULES)]
        assert glue and all((m._compiled_call_impl is not None) is levers for m in glue)
        options = Evaluator.from_built(built, torch.device("cpu")).options
        assert options.bucket == (16 if levers else 0)
    # Without the field every rank evaluates with the levers.
    plain = SpeedConfig(eval_length_buckets="16")
    assert plain.for_evaluation(trains=True) is plain


def _layer_compiled(sm: torch.nn.Module) -> bool:
    # compile_structure_module shadows the method with torch.compile's wrapper
    return hasattr(vars(sm).get("layer"), "_torchdynamo_orig_callable")


def test_cached_weight_casts_are_scoped_to_the_steps_autocast(tmp_path):
    """`cached_weight_casts`: the training model and the evaluation copy share one
    WeightCasts whose scope is the step's autocast region; apply_speedups refuses the
    field without one."""
    from scalefold.kernels import MatvecBiasGradLinear, apply_speedups
    from scalefold.model import AlphaFold, AlphaFoldConfig

    speed = SpeedConfig(fused_optimizer=True, matvec_bias_grad=True, cached_weight_casts=True)
    cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny",
                      precision="bf16", speed=speed)
    built = build_step(cfg, torch.device("cpu"), ONE_RANK)
    found = {id(m.weight_casts) for model in (built.model, built.eval_model)
             for m in model.modules() if isinstance(m, MatvecBiasGradLinear)}
    assert len(found) == 1
    casts = next(m.weight_casts for m in built.model.modules()
                 if isinstance(m, MatvecBiasGradLinear))
    assert casts._casts is None
    with built.autocast():
        assert torch.is_autocast_enabled("cpu") and casts._casts == {}
    assert casts._casts is None
    with pytest.raises(ValueError, match="WeightCasts"):
        apply_speedups(AlphaFold(AlphaFoldConfig.tiny()), speed, "bf16")
