"""AlphaFold's JAX model runs as an oracle on our feature contract and our weights."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

pytest.importorskip("alphafold.model.modules")

from scalefold.checkpoint.alphafold_params import (  # noqa: E402
    alphafold_param_shapes,
    state_dict_to_alphafold_params,
)
from scalefold.model.config import AlphaFoldConfig  # noqa: E402

from .alphafold_jax import (  # noqa: E402
    af_model_config,
    alphafold_transform,
    features_to_af_batch,
    run_alphafold,
    zero_prev,
)
from .features import random_alphafold_features  # noqa: E402
from .random_params import random_reference_state_dict  # noqa: E402

pytestmark = pytest.mark.oracle

N, S, E, T = 10, 3, 5, 2


@pytest.fixture(scope="module")
def cfg():
    return AlphaFoldConfig.tiny()


@pytest.fixture(scope="module")
def batch(cfg):
    return random_alphafold_features(cfg, n_res=N, n_clust=S, n_extra=E, n_templ=T,
                                     num_iterations=2, seed=1, n_pad=1)


def test_af_batch_for_one_iteration(cfg, batch):
    prev = zero_prev(N, cfg.evoformer.c_m, cfg.evoformer.c_z)
    af = features_to_af_batch(batch, 1, prev=prev)
    assert af["msa_feat"].shape == (1, S, N, 49) and af["msa_feat"].dtype == np.float32
    assert af["aatype"].dtype == np.int32 and af["seq_length"].tolist() == [N]
    np.testing.assert_array_equal(af["msa_feat"][0], batch["msa_feat"][0, ..., 1].numpy())
    np.testing.assert_array_equal(af["template_all_atom_masks"][0],
                                  batch["template_all_atom_mask"][0, ..., 1].numpy())
    assert "template_torsion_angles_sin_cos" not in af  # AlphaFold derives these itself
    assert af["prev"]["prev_pair"].shape == (N, N, cfg.evoformer.c_z)


def test_oracle_has_alphafolds_parameters(cfg, batch):
    af = {k: v[0] for k, v in features_to_af_batch(batch, 0).items()}
    prev = zero_prev(N, cfg.evoformer.c_m, cfg.evoformer.c_z)
    params = jax.eval_shape(alphafold_transform(cfg).init, jax.random.PRNGKey(0), af, prev)
    shapes = {f"{p}//{n}": tuple(v.shape) for p, d in params.items() for n, v in d.items()}
    assert shapes == alphafold_param_shapes(cfg)


def test_runs_tiny_model_with_random_weights(cfg, batch):
    af_params = state_dict_to_alphafold_params(random_reference_state_dict(cfg, seed=2), cfg)
    outputs = run_alphafold(af_params, batch, 2, cfg, return_all_iterations=True)
    assert len(outputs) == 2
    out = outputs[-1]
    c = cfg.evoformer
    layers = cfg.structure_module.num_blocks
    expected = {
        "final_atom_positions": (N, 37, 3), "final_atom_mask": (N, 37),
        "final_atom14_positions": (N, 14, 3), "final_affine_tensor": (N, 4, 4),
        "distogram_logits": (N, N, 64), "masked_msa_logits": (S, N, 23),
        "lddt_logits": (N, 50), "experimentally_resolved_logits": (N, 37),
        "single": (N, c.c_s), "pair": (N, N, c.c_z), "msa": (S, N, c.c_m),
        "msa_first_row": (N, c.c_m), "sm_single": (N, c.c_s), "sm_traj": (layers, N, 7),
        "sm_frames": (layers, N, 4, 4), "sm_sidechain_frames": (layers, N, 8, 4, 4),
        "sm_positions": (layers, N, 14, 3), "sm_angles": (layers, N, 7, 2),
        "sm_unnormalized_angles": (layers, N, 7, 2),
    }
    assert set(out) == set(expected)
    for name, shape in expected.items():
        assert out[name].shape == shape, name
        assert np.isfinite(out[name]).all(), name
    # Random weights reach the outputs, and the recycled inputs change the second pass.
    assert np.abs(out["final_atom_positions"]).max() > 0.1
    assert not np.allclose(outputs[0]["pair"], outputs[1]["pair"])
    # The padding residue has no atoms; the last frame is the final affine.
    assert np.all(out["final_atom_positions"][-1] == 0)
    np.testing.assert_allclose(out["sm_frames"][-1], out["final_affine_tensor"], atol=1e-6)
    # Eval mode is deterministic and the compiled function is reused.
    again = run_alphafold(af_params, batch, 2, cfg)
    np.testing.assert_array_equal(again["pair"], out["pair"])


def test_config_rules_alphafold_cannot_express():
    cfg = AlphaFoldConfig.tiny()
    bad = dataclasses.replace(cfg, evoformer=dataclasses.replace(cfg.evoformer,
                                                                 c_hidden_msa_att=3))
    with pytest.raises(ValueError, match="cannot express"):
        af_model_config(bad)
    config = af_model_config(cfg, num_recycle=3).model
    assert config.num_recycle == 3
    assert config.global_config.bfloat16 is False and config.global_config.deterministic
    evo = config.embeddings_and_evoformer
    assert not evo.evoformer.triangle_multiplication_incoming.fuse_projection_weights
    assert evo.template.enabled and evo.template.embed_torsion_angles
    assert not evo.template.use_template_unit_vector
