"""Typed configuration of the AlphaFold2 network.

The `mlperf()` preset is the OpenFold "initial_training" model the MLPerf HPC benchmark
trains (93,229,082 parameters). Field values come from the AlphaFold2 supplementary
information and the MLPerf reference's configuration; they are facts, not tuning knobs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class InputEmbedderConfig:
    tf_dim: int = 22
    msa_dim: int = 49
    c_z: int = 128
    c_m: int = 256
    relpos_k: int = 32


@dataclass(frozen=True)
class RecyclingEmbedderConfig:
    c_m: int = 256
    c_z: int = 128
    min_bin: float = 3.25
    max_bin: float = 20.75
    num_bins: int = 15
    inf: float = 1e8


@dataclass(frozen=True)
class TemplateConfig:
    enabled: bool = True
    embed_torsion_angles: bool = True
    angle_feat_dim: int = 57
    pair_feat_dim: int = 88
    c_t: int = 64
    # template pair stack
    num_blocks: int = 2
    c_hidden_tri_att: int = 16
    num_heads_tri: int = 4
    c_hidden_tri_mul: int = 64
    pair_transition_n: int = 2
    dropout_rate: float = 0.25
    # pointwise attention
    c_hidden_pointwise: int = 16
    num_heads_pointwise: int = 4
    pointwise_inf: float = 1e5
    # pair features
    distogram_min_bin: float = 3.25
    distogram_max_bin: float = 50.75
    distogram_num_bins: int = 39
    use_unit_vector: bool = False
    feat_inf: float = 1e5
    feat_eps: float = 1e-6
    inf: float = 1e9


@dataclass(frozen=True)
class ExtraMSAConfig:
    feat_dim: int = 25
    c_e: int = 64
    c_z: int = 128
    c_hidden_msa_att: int = 8
    num_heads_msa: int = 8
    c_hidden_opm: int = 32
    c_hidden_tri_mul: int = 128
    c_hidden_tri_att: int = 32
    num_heads_tri: int = 4
    num_blocks: int = 4
    transition_n: int = 4
    msa_dropout: float = 0.15
    pair_dropout: float = 0.25
    inf: float = 1e9
    # Global column attention's mask-mean eps: 1e-8 in the MLPerf reference
    # (ExtraMSAStackConfig.eps of its openfold/config.py); AlphaFold's JAX code has 1e-10.
    # It only matters for columns without any unmasked row.
    eps: float = 1e-8
    eps_opm: float = 1e-3


@dataclass(frozen=True)
class EvoformerConfig:
    c_m: int = 256
    c_z: int = 128
    c_s: int = 384
    c_hidden_msa_att: int = 32
    num_heads_msa: int = 8
    c_hidden_opm: int = 32
    c_hidden_tri_mul: int = 128
    c_hidden_tri_att: int = 32
    num_heads_tri: int = 4
    num_blocks: int = 48
    transition_n: int = 4
    msa_dropout: float = 0.15
    pair_dropout: float = 0.25
    inf: float = 1e9
    eps_opm: float = 1e-3


@dataclass(frozen=True)
class StructureModuleConfig:
    c_s: int = 384
    c_z: int = 128
    c_hidden_ipa: int = 16
    num_heads_ipa: int = 12
    num_qk_points: int = 4
    num_v_points: int = 8
    c_hidden_ang_res: int = 128
    num_ang_res_blocks: int = 2
    num_angles: int = 7
    num_blocks: int = 8
    dropout_rate: float = 0.1
    scale_factor: float = 10.0
    inf: float = 1e5
    eps: float = 1e-8


@dataclass(frozen=True)
class HeadsConfig:
    c_hidden_plddt: int = 128
    num_plddt_bins: int = 50
    num_distogram_bins: int = 64
    num_msa_classes: int = 23
    num_atom37: int = 37
    tm_enabled: bool = False
    num_tm_bins: int = 64


@dataclass(frozen=True)
class AlphaFoldConfig:
    """The whole network. Build presets with `mlperf()`, `tiny()` or `small()`."""

    input_embedder: InputEmbedderConfig = field(default_factory=InputEmbedderConfig)
    recycling_embedder: RecyclingEmbedderConfig = field(default_factory=RecyclingEmbedderConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    extra_msa: ExtraMSAConfig = field(default_factory=ExtraMSAConfig)
    evoformer: EvoformerConfig = field(default_factory=EvoformerConfig)
    structure_module: StructureModuleConfig = field(default_factory=StructureModuleConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    # Recompute each block's activations in the backward pass (training memory).
    activation_checkpointing: bool = False

    @classmethod
    def mlperf(cls) -> AlphaFoldConfig:
        """The MLPerf HPC OpenFold initial-training model (93,229,082 parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> AlphaFoldConfig:
        """A few-block, narrow model for CPU tests. Same topology as `mlperf()`."""
        return cls.mlperf().with_sizes(
            c_m=32, c_z=16, c_s=48, c_t=16, c_e=16, num_evoformer_blocks=2,
            num_extra_msa_blocks=1, num_template_blocks=1, num_structure_blocks=2,
        )

    @classmethod
    def small(cls) -> AlphaFoldConfig:
        """The embedded default's model: trains on a CPU in minutes, same topology."""
        return cls.mlperf().with_sizes(
            c_m=64, c_z=32, c_s=96, c_t=32, c_e=32, num_evoformer_blocks=4,
            num_extra_msa_blocks=1, num_template_blocks=1, num_structure_blocks=4,
        )

    def with_sizes(
        self,
        *,
        c_m: int | None = None,
        c_z: int | None = None,
        c_s: int | None = None,
        c_t: int | None = None,
        c_e: int | None = None,
        num_evoformer_blocks: int | None = None,
        num_extra_msa_blocks: int | None = None,
        num_template_blocks: int | None = None,
        num_structure_blocks: int | None = None,
    ) -> AlphaFoldConfig:
        """Copy with channel widths / depths changed consistently across modules."""
        c_m = c_m or self.evoformer.c_m
        c_z = c_z or self.evoformer.c_z
        c_s = c_s or self.evoformer.c_s
        c_t = c_t or self.template.c_t
        c_e = c_e or self.extra_msa.c_e
        rep = dataclasses.replace
        return rep(
            self,
            input_embedder=rep(self.input_embedder, c_m=c_m, c_z=c_z),
            recycling_embedder=rep(self.recycling_embedder, c_m=c_m, c_z=c_z),
            # Head widths follow AlphaFold's rule (channels / heads) and the triangle
            # multiplication width equals the pair width, as in the full model.
            template=rep(
                self.template,
                c_t=c_t,
                c_hidden_tri_att=c_t // self.template.num_heads_tri,
                c_hidden_tri_mul=c_t,
                c_hidden_pointwise=c_t // self.template.num_heads_pointwise,
                num_blocks=num_template_blocks or self.template.num_blocks,
            ),
            extra_msa=rep(
                self.extra_msa,
                c_e=c_e,
                c_z=c_z,
                c_hidden_msa_att=c_e // self.extra_msa.num_heads_msa,
                c_hidden_tri_mul=c_z,
                c_hidden_tri_att=c_z // self.extra_msa.num_heads_tri,
                num_blocks=num_extra_msa_blocks or self.extra_msa.num_blocks,
            ),
            evoformer=rep(
                self.evoformer,
                c_m=c_m,
                c_z=c_z,
                c_s=c_s,
                c_hidden_msa_att=c_m // self.evoformer.num_heads_msa,
                c_hidden_tri_mul=c_z,
                c_hidden_tri_att=c_z // self.evoformer.num_heads_tri,
                num_blocks=num_evoformer_blocks or self.evoformer.num_blocks,
            ),
            structure_module=rep(
                self.structure_module,
                c_s=c_s,
                c_z=c_z,
                num_blocks=num_structure_blocks or self.structure_module.num_blocks,
            ),
        )
