"""DAP over 2 and 4 gloo processes equals one process: outputs, loss and every gradient.

One process computes the reference (float32) for each case and writes it with the
weights and the sample; one spawn per world size then runs every case on every rank and
writes its relative errors, which the tests below read. Weights are perturbed with
noise first: the model zero-initialises its final layers, which would hide errors.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.parallel import new_dap_groups, parallelize_dap, sync_dap_gradients

from ..oracles.features import random_alphafold_features, scalefold_template_torsions
from ._dist import spawn

RTOL = 1e-5
TRAIN_SEED = 7  # the random state before the forward pass, for dropout

# MSA depth 3 + 2 template rows and 5 extra sequences: neither divides 2 or 4, so the
# padding of the sequence axis is exercised too.
SIZES = dict(n_res=8, n_clust=3, n_extra=5, n_templ=2, num_iterations=2)


def _tiny() -> AlphaFoldConfig:
    return AlphaFoldConfig.tiny()


def _mlperf_reduced() -> AlphaFoldConfig:
    return AlphaFoldConfig.mlperf().with_sizes(
        num_evoformer_blocks=1, num_extra_msa_blocks=1, num_template_blocks=1,
        num_structure_blocks=1,
    )


def _loss_like(out: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> torch.Tensor:
    # A random linear functional of every output, so every output's gradient is non-zero.
    return sum((out[k] * w).sum() for k, w in sorted(weights.items()))


def _reference(cfg: AlphaFoldConfig, *, seeds: tuple[int, ...], train: bool,
               checkpointing: bool) -> dict:
    torch.manual_seed(0)
    model = AlphaFold(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.train(train)
    model.set_activation_checkpointing(checkpointing)
    # The project's torsion port: AlphaFold's own would import JAX, slowly, for nothing here.
    batches = [random_alphafold_features(cfg, seed=s, torsion_fn=scalefold_template_torsions,
                                         **SIZES) for s in seeds]
    weights, outputs, losses = None, [], []
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for batch in batches:
        torch.manual_seed(TRAIN_SEED)
        out = model(batch)
        if weights is None:
            gen = torch.Generator().manual_seed(1)
            weights = {k: torch.randn(v.shape, generator=gen) for k, v in out.items()
                       if v.is_floating_point() and v.requires_grad}
        loss = _loss_like(out, weights)
        model.zero_grad()
        loss.backward()
        for n, p in model.named_parameters():
            # Data parallelism averages over samples.
            grads[n] += p.grad / len(batches)
        outputs.append({k: v.detach() for k, v in out.items() if v.is_floating_point()})
        losses.append(loss.detach())
    return dict(cfg=cfg, state_dict=model.state_dict(), batches=batches, weights=weights,
                outputs=outputs, losses=losses, grads=grads, train=train,
                checkpointing=checkpointing)


def _rel(actual: torch.Tensor, expected: torch.Tensor, scale: float | None = None) -> float:
    """Norm-relative error ‖a − b‖ / ‖b‖ (or / `scale`)."""
    scale = expected.norm().item() if scale is None else scale
    return (actual - expected).norm().item() / max(scale, 1e-30)


def _module_scales(grads: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per parameter, the norm of its module's whole gradient.

    Some gradients are zero in exact arithmetic and only round-off in float32 (the bias
    of the LayerNorm before MSA row attention's pair bias: softmax ignores a constant
    shift), so they are measured against their module's gradient, not their own.
    """
    sq: dict[str, float] = {}
    for n, g in grads.items():
        owner = n.rsplit(".", 1)[0]
        sq[owner] = sq.get(owner, 0.0) + g.square().sum().item()
    return {n: sq[n.rsplit(".", 1)[0]] ** 0.5 for n in grads}


# name -> (world sizes that run it, DAP size (None = the world), grad reduction, DDP,
#          overlapped MSA all-to-all)
CASES = {
    "tiny_eval": ((2, 4), None, "sum", False, False),
    "tiny_train_checkpointing": ((2,), None, "sum", False, False),
    "mlperf_reduced_eval": ((2, 4), None, "none", False, False),
    "tiny_dap2_ddp2_scale": ((4,), 2, "scale", True, False),
    "tiny_train_overlap": ((2, 4), None, "sum", False, True),
    "tiny_train_checkpointing_overlap": ((2,), None, "sum", False, True),
    # speed-ups swapped in before DAP: channels-first triangle multiplication (DAP runs
    # its project/combine halves), the outer product mean's projection and the fused
    # residual update's routing (on a CPU the kernels take the plain math)
    "tiny_train_swapped": ((2, 4), None, "sum", False, False),
}


def _build_reference(name: str) -> dict:
    if name == "tiny_eval":
        return _reference(_tiny(), seeds=(0,), train=False, checkpointing=False)
    if name in ("tiny_train_checkpointing", "tiny_train_checkpointing_overlap"):
        return _reference(_tiny(), seeds=(0,), train=True, checkpointing=True)
    if name in ("tiny_train_overlap", "tiny_train_swapped"):
        return _reference(_tiny(), seeds=(0,), train=True, checkpointing=False)
    if name == "mlperf_reduced_eval":
        return _reference(_mlperf_reduced(), seeds=(0,), train=False, checkpointing=False)
    if name == "tiny_dap2_ddp2_scale":
        return _reference(_tiny(), seeds=(0, 1), train=False, checkpointing=False)
    raise KeyError(name)


def _run_case(rank: int, world: int, name: str, ref: dict) -> dict[str, float]:
    _, dap_size, reduction, use_ddp, overlap = CASES[name]
    dap_size = dap_size or world
    model = AlphaFold(ref["cfg"])
    model.load_state_dict(ref["state_dict"])
    model.train(ref["train"])
    model.set_activation_checkpointing(ref["checkpointing"])
    scope = contextlib.nullcontext
    if name == "tiny_train_swapped":
        from scalefold.kernels import (
            swap_attention_projections,
            swap_outer_product_mean,
            swap_residual_dropout,
            swap_triangle_multiplication,
        )
        from scalefold.kernels._autocast import WeightCasts
        from scalefold.kernels.dropout import FusedResidualDropout
        from scalefold.kernels.opm import ProjectedOuterProductMean as POPM

        swap_triangle_multiplication(model, contiguous_grads=True)
        swap_residual_dropout(model)
        swap_outer_product_mean(model)
        casts = WeightCasts()
        swap_attention_projections(model, casts)
        scope = casts.scope
        outer = []
        real_outer = POPM.outer_projection
        POPM.outer_projection = lambda self, a, b: (outer.append(1), real_outer(self, a, b))[1]
        from scalefold.kernels.trimul import ChannelFirstTriangleMultiplication as CF

        calls, projected = [], []
        real, real_project = FusedResidualDropout.residual_masked, CF.project
        FusedResidualDropout.residual_masked = (
            lambda self, r, x, keep: (calls.append(1), real(self, r, x, keep))[1])
        CF.project = lambda self, z, mask: (projected.append(1), real_project(self, z, mask))[1]
    keys = list(model.state_dict())
    if dap_size == world:
        group = None
    else:
        group, _ = new_dap_groups(dap_size)
    parallelize_dap(model, group, grad_reduction=reduction, overlap=overlap)
    errors: dict[str, float] = {"state_dict_keys": float(list(model.state_dict()) != keys)}

    sample = rank // dap_size
    runner: nn.Module = nn.parallel.DistributedDataParallel(model) if use_ddp else model
    torch.manual_seed(TRAIN_SEED)
    with scope():
        out = runner(ref["batches"][sample])
    loss = _loss_like(out, ref["weights"])
    loss.backward()
    if reduction == "none":
        sync_dap_gradients(model, group)
    errors["loss"] = _rel(loss.detach(), ref["losses"][sample])
    for k, v in ref["outputs"][sample].items():
        errors[f"out/{k}"] = _rel(out[k].detach(), v)
    scales = _module_scales(ref["grads"])
    for n, p in model.named_parameters():
        errors[f"grad/{n}"] = _rel(p.grad, ref["grads"][n], scales[n])

    if name == "tiny_train_swapped":
        FusedResidualDropout.residual_masked, CF.project = real, real_project
        errors["fused_residual_not_called"] = float(not calls)
        errors["channels_first_not_called"] = float(not projected)
        POPM.outer_projection = real_outer
        errors["opm_projection_not_called"] = float(not outer)
    if name == "tiny_eval":
        # The trainer's evaluation model is a deep copy: it must stay parallelized.
        ev = copy.deepcopy(model).eval()
        errors["deepcopy_is_parallel"] = float(
            type(ev.evoformer_stack).__name__ != "DAPEvoformerStack"
            or ev.evoformer_stack._dap is not model.evoformer_stack._dap
        )
        with torch.no_grad():
            out = ev(ref["batches"][0])
        for k, v in ref["outputs"][0].items():
            errors[f"deepcopy/{k}"] = _rel(out[k], v)
        # A crop that the DAP size does not divide is refused with the dimension named.
        evo = ref["cfg"].evoformer
        n = world + 1
        try:
            model.evoformer_stack(torch.zeros(1, 4, n, evo.c_m), torch.zeros(1, n, n, evo.c_z),
                                  torch.ones(1, 4, n), torch.ones(1, n, n))
            errors["indivisible_refused"] = 1.0
        except ValueError as e:
            errors["indivisible_refused"] = float(f"N={n}" not in str(e))
        try:
            parallelize_dap(model, group)
            errors["second_parallelize_refused"] = 1.0
        except ValueError as e:
            errors["second_parallelize_refused"] = float("already" not in str(e))
    return errors


def _worker(rank: int, world: int, root: str) -> None:
    for name, (worlds, *_rest) in CASES.items():
        if world not in worlds:
            continue
        ref = torch.load(Path(root) / f"{name}.pt", weights_only=False)
        t0 = time.perf_counter()
        errors = _run_case(rank, world, name, ref)
        if rank == 0:
            print(f"[dap{world}] {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        torch.save(errors, Path(root) / f"{name}.{world}.{rank}.pt")
        dist.barrier()


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dap")
    # Tiny tensors on two shared cores: extra intra-op threads only spin.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in CASES:
            torch.save(_build_reference(name), root / f"{name}.pt")
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def results(request, references) -> tuple[int, Path]:
    """One spawn per world size runs every case of that size (tests are grouped by it)."""
    world = request.param
    spawn(_worker, world, str(references))
    return world, references


def _check(results: tuple[int, Path], name: str) -> None:
    world, root = results
    bad = {}
    for rank in range(world):
        errors = torch.load(root / f"{name}.{world}.{rank}.pt")
        bad.update({f"rank {rank} {k}": e for k, e in errors.items() if not e <= RTOL})
    assert not bad, f"{name}: relative errors above {RTOL}: {bad}"


def _worlds(name: str):
    return pytest.mark.parametrize(
        "results", CASES[name][0], indirect=True, ids=[f"dap{w}" for w in CASES[name][0]]
    )


@_worlds("tiny_eval")
def test_tiny_matches_one_process(results):
    _check(results, "tiny_eval")


@_worlds("tiny_train_checkpointing")
def test_tiny_training_with_dropout_and_checkpointing(results):
    _check(results, "tiny_train_checkpointing")


@_worlds("mlperf_reduced_eval")
def test_mlperf_width_matches_one_process(results):
    _check(results, "mlperf_reduced_eval")


@_worlds("tiny_dap2_ddp2_scale")
def test_dap_inside_ddp_with_gradient_scaling(results):
    _check(results, "tiny_dap2_ddp2_scale")


@_worlds("tiny_train_overlap")
def test_overlapped_msa_all_to_all_matches_one_process(results):
    """The MSA's all-to-all started after the outer product mean and completed at the
    block's end (and its adjoint likewise in backward): outputs and gradients as one
    process computes them."""
    _check(results, "tiny_train_overlap")


@_worlds("tiny_train_checkpointing_overlap")
def test_overlapped_all_to_all_under_activation_checkpointing(results):
    _check(results, "tiny_train_checkpointing_overlap")


@_worlds("tiny_train_swapped")
def test_swapped_kernels_run_under_dap(results):
    """The speed-ups applied before DAP are the ones DAP runs (the channels-first
    triangle multiplication's halves, the outer product mean's `outer_projection`, the
    residual update's `residual_masked`, triangle attention's bias in the stacked
    projections, the mask biases shared within the forward's scope, the outer product
    mean's stacked input projections), with outputs and
    gradients as the plain model in one process computes them."""
    _check(results, "tiny_train_swapped")
