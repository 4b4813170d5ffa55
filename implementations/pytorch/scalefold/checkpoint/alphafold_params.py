"""Mapping between the reference state dict and AlphaFold's public JAX parameters.

AlphaFold's ``params_model_*.npz`` files hold flat keys ``"<module path>//<name>"`` (the
haiku module path, then the parameter name). Its layout differs from the reference's
PyTorch layout in these ways, all handled by one table (`parameter_mapping`):

- linear weights are ``[in, out]`` (PyTorch ``[out, in]``);
- attention projections are ``[c_in, heads, c]`` and the output ``[heads, c, c_out]``
  (PyTorch ``[heads*c, c_in]`` and ``[c_out, heads*c]``), gating biases ``[heads, c]``;
- the outer product mean output is ``[c, c, c_z]`` (PyTorch ``[c_z, c*c]``, the left
  projection's channel varying slowest in both);
- the Evoformer, extra-MSA stack and template pair stack keep one parameter per kind with
  the blocks stacked on a leading axis (``layer_stack``); the reference has one tensor
  per block (``blocks.<i>.``);
- triangle multiplication *incoming* computes ``sum_k left[k,j] * right[k,i]``, so
  AlphaFold's *left* projection/gate is the reference's ``b`` and *right* is ``a``
  (outgoing: left = a, right = b);
- the structure module shares one ``fold_iteration`` across layers; its transition layers
  are ``transition``, ``transition_1``, ``transition_2`` and the angle ResNet blocks
  ``resblock1``, ``resblock1_1``, ... Invariant point attention needs no reordering: both
  implementations lay out the scalar k|v split per head and the points as
  ``[xyz, heads, points]`` the same way.

Every conversion is a transpose or reshape, so both directions are exact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scalefold.checkpoint.reference import (
    CheckpointError,
    _assign,
    _reference_view,
    check_shapes,
    check_state_dict,
)

ROOT = "alphafold/alphafold_iteration"
EVO = f"{ROOT}/evoformer"
TEMPLATE = f"{EVO}/template_embedding"
SINGLE_TEMPLATE = f"{TEMPLATE}/single_template_embedding"
TEMPLATE_STACK = f"{SINGLE_TEMPLATE}/template_pair_stack/__layer_stack_no_state"
FOLD = f"{ROOT}/structure_module/fold_iteration"


@dataclass(frozen=True)
class ParamEntry:
    """One reference tensor and where it lives in AlphaFold's parameters.

    ``af_shape`` is the shape of one block (without the stacking axis). ``n_in`` is None
    for a tensor that is only reshaped (biases, LayerNorm, gating biases); otherwise the
    AlphaFold tensor's first ``n_in`` axes are inputs, the rest outputs, and the reference
    tensor is ``[prod(outputs), prod(inputs)]``. ``block`` / ``num_blocks`` locate a
    per-block tensor on the leading AlphaFold axis.
    """

    ref: str
    af_path: str
    af_name: str
    af_shape: tuple[int, ...]
    n_in: int | None = None
    block: int | None = None
    num_blocks: int | None = None

    @property
    def af_key(self) -> str:
        return f"{self.af_path}//{self.af_name}"

    @property
    def ref_shape(self) -> tuple[int, ...]:
        if self.n_in is None:
            return (math.prod(self.af_shape),)
        return (math.prod(self.af_shape[self.n_in :]), math.prod(self.af_shape[: self.n_in]))

    @property
    def af_stacked_shape(self) -> tuple[int, ...]:
        if self.num_blocks is None:
            return self.af_shape
        return (self.num_blocks, *self.af_shape)

    def to_reference(self, af: np.ndarray) -> np.ndarray:
        # af: one block, af_shape
        if self.n_in is None:
            return af.reshape(-1)
        rows = math.prod(self.af_shape[: self.n_in])
        return af.reshape(rows, -1).T

    def to_alphafold(self, ref: np.ndarray) -> np.ndarray:
        # ref: ref_shape
        if self.n_in is None:
            return ref.reshape(self.af_shape)
        return ref.T.reshape(self.af_shape)


class _Builder:
    """Collects entries in the reference's order; one helper per building block."""

    def __init__(self) -> None:
        self.entries: list[ParamEntry] = []
        self._block: tuple[int, int] | None = None

    def add(self, ref, path, name, shape, n_in=None):
        block, num = self._block if self._block else (None, None)
        self.entries.append(ParamEntry(ref, path, name, tuple(shape), n_in, block, num))

    def in_block(self, block: int | None, num_blocks: int | None = None):
        self._block = None if block is None else (block, num_blocks)

    def linear(self, ref, path, c_in, c_out, bias=True):
        self.add(f"{ref}.weight", path, "weights", (c_in, c_out), n_in=1)
        if bias:
            self.add(f"{ref}.bias", path, "bias", (c_out,))

    def layer_norm(self, ref, path, c):
        self.add(f"{ref}.weight", path, "scale", (c,))
        self.add(f"{ref}.bias", path, "offset", (c,))

    def attention(self, ref, path, c_q, c_kv, heads, c, c_out, gating=True):
        self.add(f"{ref}.linear_q.weight", path, "query_w", (c_q, heads, c), n_in=1)
        self.add(f"{ref}.linear_k.weight", path, "key_w", (c_kv, heads, c), n_in=1)
        self.add(f"{ref}.linear_v.weight", path, "value_w", (c_kv, heads, c), n_in=1)
        self.add(f"{ref}.linear_o.weight", path, "output_w", (heads, c, c_out), n_in=2)
        self.add(f"{ref}.linear_o.bias", path, "output_b", (c_out,))
        if gating:
            self.add(f"{ref}.linear_g.weight", path, "gating_w", (c_q, heads, c), n_in=1)
            self.add(f"{ref}.linear_g.bias", path, "gating_b", (heads, c))

    def global_attention(self, ref, path, c_in, heads, c):
        self.add(f"{ref}.linear_q.weight", path, "query_w", (c_in, heads, c), n_in=1)
        self.add(f"{ref}.linear_k.weight", path, "key_w", (c_in, c), n_in=1)
        self.add(f"{ref}.linear_v.weight", path, "value_w", (c_in, c), n_in=1)
        self.add(f"{ref}.linear_g.weight", path, "gating_w", (c_in, heads, c), n_in=1)
        self.add(f"{ref}.linear_g.bias", path, "gating_b", (heads, c))
        self.add(f"{ref}.linear_o.weight", path, "output_w", (heads, c, c_in), n_in=2)
        self.add(f"{ref}.linear_o.bias", path, "output_b", (c_in,))

    def triangle_attention(self, ref, path, c_z, heads, c):
        self.layer_norm(f"{ref}.layer_norm", f"{path}/query_norm", c_z)
        self.add(f"{ref}.linear.weight", path, "feat_2d_weights", (c_z, heads), n_in=1)
        self.attention(f"{ref}.mha", f"{path}/attention", c_z, c_z, heads, c, c_z)

    def triangle_multiplication(self, ref, path, c_z, c_hidden, outgoing):
        # Incoming: AlphaFold's left operand is the reference's b (see module docstring).
        a, b = ("left", "right") if outgoing else ("right", "left")
        self.linear(f"{ref}.linear_a_p", f"{path}/{a}_projection", c_z, c_hidden)
        self.linear(f"{ref}.linear_a_g", f"{path}/{a}_gate", c_z, c_hidden)
        self.linear(f"{ref}.linear_b_p", f"{path}/{b}_projection", c_z, c_hidden)
        self.linear(f"{ref}.linear_b_g", f"{path}/{b}_gate", c_z, c_hidden)
        self.linear(f"{ref}.linear_g", f"{path}/gating_linear", c_z, c_z)
        self.linear(f"{ref}.linear_z", f"{path}/output_projection", c_hidden, c_z)
        self.layer_norm(f"{ref}.layer_norm_in", f"{path}/layer_norm_input", c_z)
        self.layer_norm(f"{ref}.layer_norm_out", f"{path}/center_layer_norm", c_hidden)

    def transition(self, ref, path, c, factor):
        self.layer_norm(f"{ref}.layer_norm", f"{path}/input_layer_norm", c)
        self.linear(f"{ref}.linear_1", f"{path}/transition1", c, factor * c)
        self.linear(f"{ref}.linear_2", f"{path}/transition2", factor * c, c)

    def outer_product_mean(self, ref, path, c_m, c, c_z):
        self.layer_norm(f"{ref}.layer_norm", f"{path}/layer_norm_input", c_m)
        self.linear(f"{ref}.linear_1", f"{path}/left_projection", c_m, c)
        self.linear(f"{ref}.linear_2", f"{path}/right_projection", c_m, c)
        self.add(f"{ref}.linear_out.weight", path, "output_w", (c, c, c_z), n_in=2)
        self.add(f"{ref}.linear_out.bias", path, "output_b", (c_z,))

    def msa_row_attention(self, ref, path, c_m, c_z, heads, c):
        self.layer_norm(f"{ref}.layer_norm_m", f"{path}/query_norm", c_m)
        self.layer_norm(f"{ref}.layer_norm_z", f"{path}/feat_2d_norm", c_z)
        self.add(f"{ref}.linear_z.weight", path, "feat_2d_weights", (c_z, heads), n_in=1)
        self.attention(f"{ref}.mha", f"{path}/attention", c_m, c_m, heads, c, c_m)

    def invariant_point_attention(self, ref, path, c_s, c_z, heads, c, pq, pv):
        # Both sides lay out the points as [xyz, heads, points] and the scalar key/value
        # projection as [heads, k|v, c], so every tensor is a plain transpose.
        self.add(f"{ref}.head_weights", path, "trainable_point_weights", (heads,))
        self.linear(f"{ref}.linear_q", f"{path}/q_scalar", c_s, heads * c)
        self.linear(f"{ref}.linear_kv", f"{path}/kv_scalar", c_s, 2 * heads * c)
        self.linear(f"{ref}.linear_q_points", f"{path}/q_point_local", c_s, heads * pq * 3)
        self.linear(
            f"{ref}.linear_kv_points", f"{path}/kv_point_local", c_s, heads * (pq + pv) * 3
        )
        self.linear(f"{ref}.linear_b", f"{path}/attention_2d", c_z, heads)
        self.linear(f"{ref}.linear_out", f"{path}/output_projection", heads * (c_z + c + 4 * pv), c_s)

    def pair_core(self, ref, path, c_z, tri_mul, tri_heads, tri_c, transition_n):
        self.triangle_multiplication(
            f"{ref}.tri_mul_out", f"{path}/triangle_multiplication_outgoing", c_z, tri_mul, True
        )
        self.triangle_multiplication(
            f"{ref}.tri_mul_in", f"{path}/triangle_multiplication_incoming", c_z, tri_mul, False
        )
        self.triangle_attention(
            f"{ref}.tri_att_start", f"{path}/triangle_attention_starting_node", c_z,
            tri_heads, tri_c,
        )
        self.triangle_attention(
            f"{ref}.tri_att_end", f"{path}/triangle_attention_ending_node", c_z,
            tri_heads, tri_c,
        )
        self.transition(f"{ref}.pair_transition", f"{path}/pair_transition", c_z, transition_n)


def parameter_mapping(config: Any) -> list[ParamEntry]:
    """Every reference tensor of a model built from ``config`` (an `AlphaFoldConfig`),
    in the reference's order, with its AlphaFold location and layout."""
    ie, rc, tp = config.input_embedder, config.recycling_embedder, config.template
    ex, ev, sm, hd = config.extra_msa, config.evoformer, config.structure_module, config.heads
    c_m, c_z, c_s = ev.c_m, ev.c_z, ev.c_s
    b = _Builder()

    b.linear("input_embedder.linear_tf_z_i", f"{EVO}/left_single", ie.tf_dim, ie.c_z)
    b.linear("input_embedder.linear_tf_z_j", f"{EVO}/right_single", ie.tf_dim, ie.c_z)
    b.linear("input_embedder.linear_tf_m", f"{EVO}/preprocess_1d", ie.tf_dim, ie.c_m)
    b.linear("input_embedder.linear_msa_m", f"{EVO}/preprocess_msa", ie.msa_dim, ie.c_m)
    b.linear(
        "input_embedder.linear_relpos", f"{EVO}/pair_activiations", 2 * ie.relpos_k + 1, ie.c_z
    )

    b.linear("recycling_embedder.linear", f"{EVO}/prev_pos_linear", rc.num_bins, rc.c_z)
    b.layer_norm("recycling_embedder.layer_norm_m", f"{EVO}/prev_msa_first_row_norm", rc.c_m)
    b.layer_norm("recycling_embedder.layer_norm_z", f"{EVO}/prev_pair_norm", rc.c_z)

    if tp.enabled:
        if tp.embed_torsion_angles:
            b.linear(
                "template_angle_embedder.linear_1", f"{EVO}/template_single_embedding",
                tp.angle_feat_dim, c_m,
            )
            b.linear("template_angle_embedder.linear_2", f"{EVO}/template_projection", c_m, c_m)
        b.linear(
            "template_pair_embedder.linear", f"{SINGLE_TEMPLATE}/embedding2d",
            tp.pair_feat_dim, tp.c_t,
        )
        for i in range(tp.num_blocks):
            b.in_block(i, tp.num_blocks)
            ref = f"template_pair_stack.blocks.{i}"
            b.triangle_attention(
                f"{ref}.tri_att_start", f"{TEMPLATE_STACK}/triangle_attention_starting_node",
                tp.c_t, tp.num_heads_tri, tp.c_hidden_tri_att,
            )
            b.triangle_attention(
                f"{ref}.tri_att_end", f"{TEMPLATE_STACK}/triangle_attention_ending_node",
                tp.c_t, tp.num_heads_tri, tp.c_hidden_tri_att,
            )
            b.triangle_multiplication(
                f"{ref}.tri_mul_out", f"{TEMPLATE_STACK}/triangle_multiplication_outgoing",
                tp.c_t, tp.c_hidden_tri_mul, True,
            )
            b.triangle_multiplication(
                f"{ref}.tri_mul_in", f"{TEMPLATE_STACK}/triangle_multiplication_incoming",
                tp.c_t, tp.c_hidden_tri_mul, False,
            )
            b.transition(
                f"{ref}.pair_transition", f"{TEMPLATE_STACK}/pair_transition",
                tp.c_t, tp.pair_transition_n,
            )
        b.in_block(None)
        b.layer_norm(
            "template_pair_stack.layer_norm", f"{SINGLE_TEMPLATE}/output_layer_norm", tp.c_t
        )
        b.attention(
            "template_pointwise_attention.mha", f"{TEMPLATE}/attention", c_z, tp.c_t,
            tp.num_heads_pointwise, tp.c_hidden_pointwise, c_z, gating=False,
        )

    b.linear("extra_msa_embedder.linear", f"{EVO}/extra_msa_activations", ex.feat_dim, ex.c_e)
    path = f"{EVO}/extra_msa_stack"
    for i in range(ex.num_blocks):
        b.in_block(i, ex.num_blocks)
        ref = f"extra_msa_stack.blocks.{i}"
        b.msa_row_attention(
            f"{ref}.msa_att_row", f"{path}/msa_row_attention_with_pair_bias", ex.c_e, ex.c_z,
            ex.num_heads_msa, ex.c_hidden_msa_att,
        )
        b.layer_norm(
            f"{ref}.msa_att_col.layer_norm_m", f"{path}/msa_column_global_attention/query_norm",
            ex.c_e,
        )
        b.global_attention(
            f"{ref}.msa_att_col.global_attention",
            f"{path}/msa_column_global_attention/attention", ex.c_e, ex.num_heads_msa,
            ex.c_hidden_msa_att,
        )
        b.transition(f"{ref}.core.msa_transition", f"{path}/msa_transition", ex.c_e, ex.transition_n)
        b.outer_product_mean(
            f"{ref}.core.outer_product_mean", f"{path}/outer_product_mean", ex.c_e,
            ex.c_hidden_opm, ex.c_z,
        )
        b.pair_core(
            f"{ref}.core", path, ex.c_z, ex.c_hidden_tri_mul, ex.num_heads_tri,
            ex.c_hidden_tri_att, ex.transition_n,
        )
    b.in_block(None)

    path = f"{EVO}/evoformer_iteration"
    for i in range(ev.num_blocks):
        b.in_block(i, ev.num_blocks)
        ref = f"evoformer_stack.blocks.{i}"
        b.msa_row_attention(
            f"{ref}.msa_att_row", f"{path}/msa_row_attention_with_pair_bias", c_m, c_z,
            ev.num_heads_msa, ev.c_hidden_msa_att,
        )
        b.layer_norm(
            f"{ref}.msa_att_col.layer_norm_m", f"{path}/msa_column_attention/query_norm", c_m
        )
        b.attention(
            f"{ref}.msa_att_col.mha", f"{path}/msa_column_attention/attention", c_m, c_m,
            ev.num_heads_msa, ev.c_hidden_msa_att, c_m,
        )
        b.transition(f"{ref}.core.msa_transition", f"{path}/msa_transition", c_m, ev.transition_n)
        b.outer_product_mean(
            f"{ref}.core.outer_product_mean", f"{path}/outer_product_mean", c_m,
            ev.c_hidden_opm, c_z,
        )
        b.pair_core(
            f"{ref}.core", path, c_z, ev.c_hidden_tri_mul, ev.num_heads_tri,
            ev.c_hidden_tri_att, ev.transition_n,
        )
    b.in_block(None)
    b.linear("evoformer_stack.linear", f"{EVO}/single_activations", c_m, c_s)

    s_cs, s_cz = sm.c_s, sm.c_z
    heads, c_ipa = sm.num_heads_ipa, sm.c_hidden_ipa
    pq, pv = sm.num_qk_points, sm.num_v_points
    b.layer_norm("structure_module.layer_norm_s", f"{ROOT}/structure_module/single_layer_norm", s_cs)
    b.layer_norm("structure_module.layer_norm_z", f"{ROOT}/structure_module/pair_layer_norm", s_cz)
    b.linear(
        "structure_module.linear_in", f"{ROOT}/structure_module/initial_projection", s_cs, s_cs
    )
    b.invariant_point_attention(
        "structure_module.ipa", f"{FOLD}/invariant_point_attention", s_cs, s_cz, heads, c_ipa,
        pq, pv,
    )
    b.layer_norm("structure_module.layer_norm_ipa", f"{FOLD}/attention_layer_norm", s_cs)
    for j, name in enumerate(("transition", "transition_1", "transition_2")):
        b.linear(f"structure_module.transition.linear_{j + 1}", f"{FOLD}/{name}", s_cs, s_cs)
    b.layer_norm("structure_module.transition.layer_norm", f"{FOLD}/transition_layer_norm", s_cs)
    b.linear("structure_module.bb_update.linear", f"{FOLD}/affine_update", s_cs, 6)
    side = f"{FOLD}/rigid_sidechain"
    c_res = sm.c_hidden_ang_res
    b.linear("structure_module.angle_resnet.linear_in", f"{side}/input_projection", s_cs, c_res)
    b.linear(
        "structure_module.angle_resnet.linear_initial", f"{side}/input_projection_1", s_cs, c_res
    )
    for j in range(sm.num_ang_res_blocks):
        suffix = "" if j == 0 else f"_{j}"
        ref = f"structure_module.angle_resnet.layers.{j}"
        b.linear(f"{ref}.linear_1", f"{side}/resblock1{suffix}", c_res, c_res)
        b.linear(f"{ref}.linear_2", f"{side}/resblock2{suffix}", c_res, c_res)
    b.linear(
        "structure_module.angle_resnet.linear_out", f"{side}/unnormalized_angles", c_res,
        2 * sm.num_angles,
    )

    plddt = f"{ROOT}/predicted_lddt_head"
    b.layer_norm("auxiliary_heads.plddt.layer_norm", f"{plddt}/input_layer_norm", c_s)
    b.linear("auxiliary_heads.plddt.linear_1", f"{plddt}/act_0", c_s, hd.c_hidden_plddt)
    b.linear("auxiliary_heads.plddt.linear_2", f"{plddt}/act_1", hd.c_hidden_plddt, hd.c_hidden_plddt)
    b.linear("auxiliary_heads.plddt.linear_3", f"{plddt}/logits", hd.c_hidden_plddt, hd.num_plddt_bins)
    b.linear(
        "auxiliary_heads.distogram.linear", f"{ROOT}/distogram_head/half_logits", c_z,
        hd.num_distogram_bins,
    )
    b.linear(
        "auxiliary_heads.masked_msa.linear", f"{ROOT}/masked_msa_head/logits", c_m,
        hd.num_msa_classes,
    )
    b.linear(
        "auxiliary_heads.experimentally_resolved.linear",
        f"{ROOT}/experimentally_resolved_head/logits", c_s, hd.num_atom37,
    )
    if hd.tm_enabled:
        b.linear(
            "auxiliary_heads.tm.linear", f"{ROOT}/predicted_aligned_error_head/logits", c_z,
            hd.num_tm_bins,
        )
    return b.entries


def reference_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Reference tensor name -> shape for ``config``, in the reference's order."""
    return {e.ref: e.ref_shape for e in parameter_mapping(config)}


def alphafold_param_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """AlphaFold flat key (``path//name``) -> shape, stacked blocks included."""
    return {e.af_key: e.af_stacked_shape for e in parameter_mapping(config)}


# --------------------------------------------------------------------------- containers


def flatten_alphafold_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{path: {name: array}}`` (haiku) or already flat -> ``{"path//name": array}``."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            for name, array in value.items():
                flat[f"{key}//{name}"] = array
        else:
            flat[key] = value
    return flat


def unflatten_alphafold_params(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"path//name": array}`` -> ``{path: {name: array}}`` as haiku expects."""
    nested: dict[str, dict[str, Any]] = {}
    for key, array in flat.items():
        path, sep, name = key.rpartition("//")
        if not sep:
            raise CheckpointError(f"AlphaFold parameter key without '//': {key!r}")
        nested.setdefault(path, {})[name] = array
    return nested


def load_alphafold_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a ``params_model_*.npz`` into a flat dict, with clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"AlphaFold parameter file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except Exception as error:  # noqa: BLE001 - numpy raises several types for bad files
        raise CheckpointError(
            f"{path}: not a readable AlphaFold .npz parameter file "
            f"({type(error).__name__}: {error})"
        ) from error


def _unfuse_triangle_multiplication(flat: dict[str, Any]) -> dict[str, Any]:
    """Rewrite fused triangle-multiplication parameters (AlphaFold-Multimer v3 and
    ColabFold's default) into the unfused names this mapping uses.

    The fused module projects to ``2*c`` channels, the first half being *left*, and uses
    LayerNorms named ``left_norm_input`` / ``center_norm``; the computation is otherwise the
    same, so splitting the weights is exact.
    """
    out = dict(flat)
    for key in list(flat):
        path, _, name = key.rpartition("//")
        module = path.rpartition("/")[2]
        parent = path.rpartition("/")[0]
        if not parent.rpartition("/")[2].startswith("triangle_multiplication_"):
            continue
        if module in ("projection", "gate"):
            array = out.pop(key)
            half = array.shape[-1] // 2
            stem = "projection" if module == "projection" else "gate"
            out[f"{parent}/left_{stem}//{name}"] = array[..., :half]
            out[f"{parent}/right_{stem}//{name}"] = array[..., half:]
        elif module == "left_norm_input":
            out[f"{parent}/layer_norm_input//{name}"] = out.pop(key)
        elif module == "center_norm":
            out[f"{parent}/center_layer_norm//{name}"] = out.pop(key)
    return out


# --------------------------------------------------------------------------- conversion


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            # numpy has no bfloat16; float32 holds every bfloat16 value exactly.
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _to_torch(array: np.ndarray) -> torch.Tensor:
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    # A copy: the input may be read-only (jax, np.load) and must not alias the result.
    return torch.from_numpy(np.array(array, order="C", copy=True))


def _strip_ignored(flat: dict[str, Any], ignore: Iterable[str]) -> dict[str, Any]:
    prefixes = tuple(ignore)
    if not prefixes:
        return flat
    return {k: v for k, v in flat.items() if not k.startswith(prefixes)}


def alphafold_params_to_state_dict(
    af_params: Mapping[str, Any],
    config: Any,
    *,
    ignore: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """AlphaFold parameters (flat npz keys or nested haiku dict) -> reference state dict.

    Strict: every AlphaFold parameter must be used and every reference tensor produced,
    with matching shapes, or one `CheckpointError` lists the differences. ``ignore``:
    AlphaFold key prefixes to drop first (e.g. the predicted-aligned-error head of a
    ``_ptm`` model when the TM head is off).
    """
    flat = _unfuse_triangle_multiplication(flatten_alphafold_params(af_params))
    flat = _strip_ignored(flat, ignore)
    entries = parameter_mapping(config)
    expected = {e.af_key: e.af_stacked_shape for e in entries}
    shapes = {k: tuple(np.shape(v)) for k, v in flat.items()}
    check_shapes(shapes, expected, "AlphaFold parameters")

    cache: dict[str, np.ndarray] = {}
    state = {}
    for e in entries:
        if e.af_key not in cache:
            cache[e.af_key] = _to_numpy(flat[e.af_key])
        array = cache[e.af_key]
        if e.block is not None:
            array = array[e.block]
        state[e.ref] = _to_torch(e.to_reference(array))
    return state


def state_dict_to_alphafold_params(
    state_dict: Mapping[str, Any], config: Any
) -> dict[str, dict[str, np.ndarray]]:
    """Reference state dict -> nested haiku params ``{path: {name: np.ndarray}}``.

    Strict like the other direction; bfloat16 tensors come out as float32 (numpy has no
    bfloat16).
    """
    entries = parameter_mapping(config)
    check_state_dict(state_dict, {e.ref: e.ref_shape for e in entries}, "state dict")
    grouped: dict[str, list[tuple[ParamEntry, np.ndarray]]] = {}
    for e in entries:
        array = e.to_alphafold(_to_numpy(state_dict[e.ref]))
        grouped.setdefault(e.af_key, []).append((e, array))
    flat = {}
    for key, items in grouped.items():
        first = items[0][0]
        if first.num_blocks is None:
            flat[key] = np.ascontiguousarray(items[0][1])
        else:
            ordered = sorted(items, key=lambda item: item[0].block)
            flat[key] = np.stack([array for _, array in ordered])
    return unflatten_alphafold_params(flat)


def import_alphafold_params(
    model: nn.Module,
    npz_path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
    *,
    config: Any = None,
    ignore: Iterable[str] = (),
) -> None:
    """Load AlphaFold's JAX parameters (a ``params_model_*.npz`` or a params dict) into
    ``model``, strictly. ``config`` defaults to ``model.config``."""
    if config is None:
        config = getattr(model, "config", None)
        if config is None:
            raise ValueError("pass config=: the model has no .config attribute")
    if isinstance(npz_path_or_dict, Mapping):
        params: Mapping[str, Any] = npz_path_or_dict
    else:
        params = load_alphafold_npz(npz_path_or_dict)
    state = alphafold_params_to_state_dict(params, config, ignore=ignore)
    expected = {name: tuple(t.shape) for name, t in _reference_view(model).items()}
    check_state_dict(state, expected, "AlphaFold parameters mapped to the model")
    _assign(model, state)
