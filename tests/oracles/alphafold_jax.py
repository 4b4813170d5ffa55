"""AlphaFold's own JAX model (ColabFold's packaging of AlphaFold 2.3) as a test oracle.

Typical use in a parity test::

    cfg = AlphaFoldConfig.tiny()
    state = random_reference_state_dict(cfg, seed=0)        # every weight random
    model.load_state_dict(state) / load_reference_checkpoint(model, state)
    af_params = state_dict_to_alphafold_params(state, cfg)
    batch = random_alphafold_features(cfg, n_res=24, num_iterations=2)
    ours = model.eval()(batch)
    theirs = run_alphafold(af_params, batch, num_iterations=2, config=cfg)

`run_alphafold` jits one recycling iteration per configuration and input shape and keeps
the compiled function for the life of the process (tracing and compiling even a 2-block
model takes minutes on a CPU). JAX's persistent compilation cache is switched on in
``<repository>/.cache/jax`` so later test sessions skip most of that; set
``SCALEFOLD_JAX_CACHE_DIR`` to another folder, or to an empty string to switch it off.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
from alphafold.model import config as af_config  # noqa: E402
from alphafold.model import folding, modules, quat_affine  # noqa: E402

from scalefold.checkpoint.alphafold_params import (  # noqa: E402
    flatten_alphafold_params,
    unflatten_alphafold_params,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _enable_compilation_cache() -> None:
    cache_dir = os.environ.get("SCALEFOLD_JAX_CACHE_DIR", str(REPO_ROOT / ".cache" / "jax"))
    if not cache_dir:
        return
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    except Exception:  # noqa: BLE001 - a cache is an optimisation, never a failure
        pass


_enable_compilation_cache()


# --------------------------------------------------------------------------- config


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"AlphaFold's JAX model cannot express this configuration: {message}")


def af_model_config(cfg: Any, *, num_recycle: int = 0) -> ml_collections.ConfigDict:
    """AlphaFold's ConfigDict (use its ``.model``) for an `AlphaFoldConfig`.

    Same widths and depths; float32 (``bfloat16`` off), deterministic, unfused triangle
    multiplications, templates with torsion-angle embedding, no template unit vector (as
    the reference). AlphaFold derives attention head widths as channels / heads and
    shares one Evoformer block config between the main and extra-MSA stacks, so a
    configuration that breaks those rules raises `ValueError`.
    """
    ie, rc, tp = cfg.input_embedder, cfg.recycling_embedder, cfg.template
    ex, ev, sm, hd = cfg.extra_msa, cfg.evoformer, cfg.structure_module, cfg.heads

    _require(ev.num_heads_msa * ev.c_hidden_msa_att == ev.c_m, "MSA head width != c_m/heads")
    _require(ex.num_heads_msa * ex.c_hidden_msa_att == ex.c_e, "extra MSA head width")
    _require(ev.num_heads_tri * ev.c_hidden_tri_att == ev.c_z, "triangle head width")
    _require(ex.num_heads_tri * ex.c_hidden_tri_att == ex.c_z, "extra triangle head width")
    for field in ("num_heads_msa", "c_hidden_opm", "c_hidden_tri_mul", "num_heads_tri",
                  "transition_n", "c_z"):
        _require(getattr(ex, field) == getattr(ev, field), f"extra_msa.{field} != evoformer's")
    _require(tp.num_heads_tri * tp.c_hidden_tri_att == tp.c_t, "template triangle head width")
    _require(ie.tf_dim == 22 and ie.msa_dim == 49 and ex.feat_dim == 25, "feature widths")
    _require(sm.num_angles == 7 and hd.num_atom37 == 37, "angles / atoms")
    _require(tp.angle_feat_dim == 57 and tp.pair_feat_dim == 88, "template feature widths")
    _require(sm.c_s == ev.c_s and sm.c_z == ev.c_z, "structure module widths")

    config = af_config.model_config("model_1_ptm" if hd.tm_enabled else "model_1")
    m = config.model
    gc = m.global_config
    gc.bfloat16 = False
    gc.bfloat16_output = False
    gc.deterministic = True
    gc.use_remat = False
    gc.use_pallas = False
    gc.eval_dropout = False
    # zero_init stays True: it only changes initialisers, and it makes the model compute
    # template torsions without placeholders (placeholder_for_undefined = not zero_init).
    gc.zero_init = True
    m.num_recycle = num_recycle
    m.resample_msa_in_recycling = False

    e = m.embeddings_and_evoformer
    e.evoformer_num_block = ev.num_blocks
    e.extra_msa_stack_num_block = ex.num_blocks
    e.msa_channel = ev.c_m
    e.pair_channel = ev.c_z
    e.seq_channel = ev.c_s
    e.extra_msa_channel = ex.c_e
    e.max_relative_feature = ie.relpos_k
    e.prev_pos.min_bin, e.prev_pos.max_bin = rc.min_bin, rc.max_bin
    e.prev_pos.num_bins = rc.num_bins
    e.recycle_pos = e.recycle_features = True

    evo = e.evoformer
    evo.msa_row_attention_with_pair_bias.num_head = ev.num_heads_msa
    evo.msa_column_attention.num_head = ev.num_heads_msa
    evo.msa_transition.num_intermediate_factor = ev.transition_n
    evo.pair_transition.num_intermediate_factor = ev.transition_n
    evo.outer_product_mean.num_outer_channel = ev.c_hidden_opm
    for name in ("triangle_attention_starting_node", "triangle_attention_ending_node"):
        evo[name].num_head = ev.num_heads_tri
    for name in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        evo[name].num_intermediate_channel = ev.c_hidden_tri_mul
        evo[name].fuse_projection_weights = False

    t = e.template
    t.enabled = tp.enabled
    t.embed_torsion_angles = tp.embed_torsion_angles
    t.use_template_unit_vector = tp.use_unit_vector
    t.dgram_features.min_bin = tp.distogram_min_bin
    t.dgram_features.max_bin = tp.distogram_max_bin
    t.dgram_features.num_bins = tp.distogram_num_bins
    t.attention.num_head = tp.num_heads_pointwise
    t.attention.key_dim = t.attention.value_dim = tp.num_heads_pointwise * tp.c_hidden_pointwise
    t.attention.gating = False
    ps = t.template_pair_stack
    ps.num_block = tp.num_blocks
    for name in ("triangle_attention_starting_node", "triangle_attention_ending_node"):
        ps[name].num_head = tp.num_heads_tri
        # value_dim of the ending-node attention is also the template pair width in AF.
        ps[name].key_dim = ps[name].value_dim = tp.c_t
    for name in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        ps[name].num_intermediate_channel = tp.c_hidden_tri_mul
        ps[name].fuse_projection_weights = False
    ps.pair_transition.num_intermediate_factor = tp.pair_transition_n

    h = m.heads
    s = h.structure_module
    s.num_layer = sm.num_blocks
    s.num_channel = sm.c_s
    s.num_head = sm.num_heads_ipa
    s.num_scalar_qk = s.num_scalar_v = sm.c_hidden_ipa
    s.num_point_qk, s.num_point_v = sm.num_qk_points, sm.num_v_points
    s.position_scale = sm.scale_factor
    s.sidechain.num_channel = sm.c_hidden_ang_res
    s.sidechain.num_residual_block = sm.num_ang_res_blocks
    h.predicted_lddt.num_channels = hd.c_hidden_plddt
    h.predicted_lddt.num_bins = hd.num_plddt_bins
    h.distogram.num_bins = hd.num_distogram_bins
    h.masked_msa.num_output = hd.num_msa_classes
    h.experimentally_resolved.weight = 0.01
    h.predicted_aligned_error.weight = 0.1 if hd.tm_enabled else 0.0
    h.predicted_aligned_error.num_bins = hd.num_tm_bins
    return config


# --------------------------------------------------------------------------- features

# AlphaFold key -> (our key, numpy dtype). AlphaFold names the template atom mask
# `template_all_atom_masks`; it recomputes template torsion angles from the coordinates,
# so our template_torsion_* features have no counterpart here.
_AF_FEATURES = {
    "aatype": ("aatype", np.int32),
    "target_feat": ("target_feat", np.float32),
    "residue_index": ("residue_index", np.int32),
    "seq_mask": ("seq_mask", np.float32),
    "msa_feat": ("msa_feat", np.float32),
    "msa_mask": ("msa_mask", np.float32),
    "extra_msa": ("extra_msa", np.int32),
    "extra_has_deletion": ("extra_has_deletion", np.float32),
    "extra_deletion_value": ("extra_deletion_value", np.float32),
    "extra_msa_mask": ("extra_msa_mask", np.float32),
    "template_aatype": ("template_aatype", np.int32),
    "template_all_atom_positions": ("template_all_atom_positions", np.float32),
    "template_all_atom_masks": ("template_all_atom_mask", np.float32),
    "template_mask": ("template_mask", np.float32),
    "template_pseudo_beta": ("template_pseudo_beta", np.float32),
    "template_pseudo_beta_mask": ("template_pseudo_beta_mask", np.float32),
    "atom14_atom_exists": ("atom14_atom_exists", np.float32),
    "residx_atom14_to_atom37": ("residx_atom14_to_atom37", np.int32),
    "residx_atom37_to_atom14": ("residx_atom37_to_atom14", np.int32),
    "atom37_atom_exists": ("atom37_atom_exists", np.float32),
}
_TEMPLATE_KEYS = {k for k in _AF_FEATURES if k.startswith("template_")}


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def features_to_af_batch(
    batch: Mapping[str, Any],
    iteration: int,
    *,
    prev: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Our feature batch (leading batch dim 1, trailing recycling dim) -> AlphaFold's batch
    for one recycling iteration, with a leading ensemble dimension of 1.

    ``prev`` (``prev_msa_first_row`` [N,c_m], ``prev_pair`` [N,N,c_z], ``prev_pos``
    [N,37,3]) goes under ``batch["prev"]`` as ColabFold's fork expects; leave it out for
    the first iteration only if the model has AlphaFold's default 256/128 widths (the fork
    builds zeros of those widths), otherwise pass zeros yourself.
    """
    out: dict[str, Any] = {}
    templates = "template_aatype" in batch
    for af_key, (key, dtype) in _AF_FEATURES.items():
        if af_key in _TEMPLATE_KEYS and not templates:
            continue
        value = _numpy(batch[key])
        if value.shape[0] != 1:
            raise ValueError(f"{key}: batch dimension {value.shape[0]}, the oracle takes 1")
        out[af_key] = value[0, ..., iteration].astype(dtype)[None]
    n_res = out["aatype"].shape[-1]
    out["seq_length"] = np.full((1,), n_res, np.int32)
    if prev is not None:
        out["prev"] = {k: np.asarray(v, np.float32) for k, v in prev.items()}
    return out


def zero_prev(n_res: int, c_m: int, c_z: int) -> dict[str, np.ndarray]:
    """The recycling inputs of the first iteration."""
    return {
        "prev_msa_first_row": np.zeros((n_res, c_m), np.float32),
        "prev_pair": np.zeros((n_res, n_res, c_z), np.float32),
        "prev_pos": np.zeros((n_res, 37, 3), np.float32),
    }


# --------------------------------------------------------------------------- model


class _Iteration(hk.Module):
    """One recycling iteration with AlphaFold's module names (so its parameters are
    exactly ``modules.AlphaFold``'s), keeping the structure module's per-layer outputs
    that ``modules.AlphaFoldIteration`` drops when it computes no loss."""

    def __init__(self, config, global_config):
        super().__init__(name="alphafold_iteration")
        self.config = config
        self.global_config = global_config

    def __call__(self, batch):
        c, gc = self.config, self.global_config
        reps = modules.EmbeddingsAndEvoformer(c.embeddings_and_evoformer, gc)(batch, False)
        out = {"representations": reps}
        out["masked_msa"] = modules.MaskedMsaHead(c.heads.masked_msa, gc)(reps, batch, False)
        out["distogram"] = modules.DistogramHead(c.heads.distogram, gc)(reps, batch, False)
        structure = folding.StructureModule(c.heads.structure_module, gc, compute_loss=True)(
            reps, batch, False
        )
        reps.update(structure.pop("representations"))
        out["structure_module"] = structure
        out["predicted_lddt"] = modules.PredictedLDDTHead(c.heads.predicted_lddt, gc)(
            reps, batch, False
        )
        out["experimentally_resolved"] = modules.ExperimentallyResolvedHead(
            c.heads.experimentally_resolved, gc
        )(reps, batch, False)
        if c.heads.predicted_aligned_error.weight:
            out["predicted_aligned_error"] = modules.PredictedAlignedErrorHead(
                c.heads.predicted_aligned_error, gc
            )(reps, batch, False)
        return out


def _rigids_to_4x4(rigids) -> jnp.ndarray:
    rot, trans = rigids.rot, rigids.trans
    rows = [
        jnp.stack([rot.xx, rot.xy, rot.xz, trans.x], -1),
        jnp.stack([rot.yx, rot.yy, rot.yz, trans.y], -1),
        jnp.stack([rot.zx, rot.zy, rot.zz, trans.z], -1),
        jnp.stack([jnp.zeros_like(trans.x)] * 3 + [jnp.ones_like(trans.x)], -1),
    ]
    return jnp.stack(rows, -2)


def _affine_to_4x4(traj: jnp.ndarray) -> jnp.ndarray:
    # traj [..., 7]: quaternion (w, x, y, z; not necessarily unit) then translation
    affine = quat_affine.QuatAffine.from_tensor(traj, normalize=True)
    rot = jnp.stack([jnp.stack(row, -1) for row in affine.rotation], -2)  # [..., 3, 3]
    trans = jnp.stack(affine.translation, -1)[..., None]  # [..., 3, 1]
    top = jnp.concatenate([rot, trans], -1)
    bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0]), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], -2)


def _forward(model_config, batch, prev):
    ret = _Root(model_config)({**batch, **prev})
    sm = ret["structure_module"]
    reps = ret["representations"]
    side = sm["sidechains"]
    result = {
        "final_atom_positions": sm["final_atom_positions"],  # [N, 37, 3]
        "final_atom_mask": sm["final_atom_mask"],  # [N, 37]
        "final_atom14_positions": sm["final_atom14_positions"],  # [N, 14, 3]
        "final_affine_tensor": _affine_to_4x4(sm["final_affines"]),  # [N, 4, 4]
        "distogram_logits": ret["distogram"]["logits"],  # [N, N, bins]
        "masked_msa_logits": ret["masked_msa"]["logits"],  # [S, N, 23]
        "lddt_logits": ret["predicted_lddt"]["logits"],  # [N, 50]
        "experimentally_resolved_logits": ret["experimentally_resolved"]["logits"],  # [N, 37]
        "single": reps["single"],  # [N, c_s]
        "pair": reps["pair"],  # [N, N, c_z]
        "msa": reps["msa"],  # [S, N, c_m] (template rows dropped)
        "msa_first_row": reps["msa_first_row"],  # [N, c_m]
        "sm_single": reps["structure_module"],  # [N, c_s]
        "sm_traj": sm["traj"],  # [L, N, 7], translations in Angstrom
        "sm_frames": _affine_to_4x4(sm["traj"]),  # [L, N, 4, 4]
        "sm_sidechain_frames": _rigids_to_4x4(side["frames"]),  # [L, N, 8, 4, 4]
        "sm_positions": jnp.stack(
            [side["atom_pos"].x, side["atom_pos"].y, side["atom_pos"].z], -1
        ),  # [L, N, 14, 3]
        "sm_angles": side["angles_sin_cos"],  # [L, N, 7, 2]
        "sm_unnormalized_angles": side["unnormalized_angles_sin_cos"],  # [L, N, 7, 2]
    }
    if "predicted_aligned_error" in ret:
        result["tm_logits"] = ret["predicted_aligned_error"]["logits"]  # [N, N, bins]
    return result


class _Root(hk.Module):
    def __init__(self, model_config):
        super().__init__(name="alphafold")
        self.model_config = model_config

    def __call__(self, batch):
        m = self.model_config
        return _Iteration(m, m.global_config)(batch)


# config JSON -> (transform, jitted apply): one trace per configuration and input shape
# for the life of the process.
_COMPILED: dict[str, tuple[hk.Transformed, Any]] = {}


def _transformed(cfg: Any) -> tuple[hk.Transformed, Any]:
    model_config = af_model_config(cfg).model
    key = model_config.to_json_best_effort(sort_keys=True)
    if key not in _COMPILED:
        transformed = hk.transform(functools.partial(_forward, model_config))
        _COMPILED[key] = (transformed, jax.jit(transformed.apply))
    return _COMPILED[key]


def alphafold_transform(cfg: Any) -> hk.Transformed:
    """The haiku transform of one oracle iteration: ``init(rng, batch, prev)`` /
    ``apply(params, rng, batch, prev)`` with batches without the ensemble dimension."""
    return _transformed(cfg)[0]


def run_alphafold(
    af_params: Mapping[str, Any],
    batch: Mapping[str, Any],
    num_iterations: int,
    config: Any,
    *,
    return_all_iterations: bool = False,
) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
    """Run AlphaFold's JAX model on our feature batch for ``num_iterations`` recycling
    iterations (eval mode), feeding each iteration's outputs to the next as AlphaFold does.

    ``af_params``: nested haiku params or flat npz-style keys (e.g. from
    `state_dict_to_alphafold_params`). ``config``: the `AlphaFoldConfig` they belong to.
    Returns numpy outputs of the last iteration without batch dimension (keys as in
    CONTRACTS.md where a counterpart exists, plus ``sm_traj``, ``msa_first_row``,
    ``final_atom14_positions``), or a list with every iteration's outputs.
    """
    _, apply = _transformed(config)
    params = unflatten_alphafold_params(flatten_alphafold_params(af_params))
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    n_res = _numpy(batch["aatype"]).shape[1]
    prev = zero_prev(n_res, config.evoformer.c_m, config.evoformer.c_z)
    rng = jax.random.PRNGKey(0)
    outputs = []
    for iteration in range(num_iterations):
        af_batch = features_to_af_batch(batch, iteration)
        af_batch = {k: v[0] for k, v in af_batch.items()}  # drop the ensemble dimension
        out = apply(params, rng, af_batch, prev)
        out = {k: np.asarray(v) for k, v in out.items()}
        outputs.append(out)
        prev = {
            "prev_msa_first_row": out["msa_first_row"],
            "prev_pair": out["pair"],
            "prev_pos": out["final_atom_positions"],
        }
    return outputs if return_all_iterations else outputs[-1]
