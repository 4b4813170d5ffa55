"""The AlphaFold2 monomer network with recycling (AlphaFold2 supplement, Algorithm 2).

Input and output follow docs/CONTRACTS.md: feature tensors carry a leading batch
dimension and a trailing recycling dimension R; the network runs R iterations, each
seeing its own slice of the features, and differentiates through the last one only.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.geometry import residue_constants as rc
from scalefold.geometry.all_atom import atom14_to_atom37
from scalefold.model.config import AlphaFoldConfig
from scalefold.model.embedders import (
    ExtraMSAEmbedder,
    InputEmbedder,
    RecyclingEmbedder,
    build_extra_msa_feat,
)
from scalefold.model.evoformer import EvoformerStack, ExtraMSAStack
from scalefold.model.heads import AuxiliaryHeads
from scalefold.model.structure_module import StructureModule
from scalefold.model.template import (
    TemplateAngleEmbedder,
    TemplatePairEmbedder,
    TemplatePairStack,
    TemplatePointwiseAttention,
    build_template_angle_feat,
    build_template_pair_feat,
)

Batch = dict[str, torch.Tensor]


def pseudo_beta_positions(aatype: torch.Tensor, atom37: torch.Tensor) -> torch.Tensor:
    """Cβ position (Cα for glycine): [*, N, 37, 3] -> [*, N, 3]."""
    is_gly = (aatype == rc.restype_order["G"]).unsqueeze(-1)
    return torch.where(
        is_gly, atom37[..., rc.atom_order["CA"], :], atom37[..., rc.atom_order["CB"], :]
    )


class AlphaFold(nn.Module):
    def __init__(self, config: AlphaFoldConfig) -> None:
        super().__init__()
        self.config = config
        evo, tpl, ext = config.evoformer, config.template, config.extra_msa
        self.input_embedder = InputEmbedder(config.input_embedder)
        self.recycling_embedder = RecyclingEmbedder(config.recycling_embedder)
        if tpl.enabled:
            self.template_angle_embedder = TemplateAngleEmbedder(tpl.angle_feat_dim, evo.c_m)
            self.template_pair_embedder = TemplatePairEmbedder(tpl.pair_feat_dim, tpl.c_t)
            self.template_pair_stack = TemplatePairStack(tpl)
            self.template_pointwise_attention = TemplatePointwiseAttention(
                tpl.c_t, evo.c_z, tpl.c_hidden_pointwise, tpl.num_heads_pointwise,
                tpl.pointwise_inf,
            )
        self.extra_msa_embedder = ExtraMSAEmbedder(ext.feat_dim, ext.c_e)
        self.extra_msa_stack = ExtraMSAStack(ext)
        self.evoformer_stack = EvoformerStack(evo)
        self.structure_module = StructureModule(config.structure_module)
        self.auxiliary_heads = AuxiliaryHeads(config.heads, evo.c_m, evo.c_z, evo.c_s)
        self.set_activation_checkpointing(config.activation_checkpointing)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each stack block's activations during backward (training memory)."""
        stacks = [self.evoformer_stack, self.extra_msa_stack]
        if self.config.template.enabled:
            stacks.append(self.template_pair_stack)
        for stack in stacks:
            stack.activation_checkpointing = enabled

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        num_iters = batch["aatype"].shape[-1]
        prev: dict[str, torch.Tensor] = {}
        outputs: dict[str, torch.Tensor] = {}
        grad_enabled = torch.is_grad_enabled()
        for it in range(num_iters):
            feats = {k: v[..., it] for k, v in batch.items() if isinstance(v, torch.Tensor)}
            is_last = it == num_iters - 1
            # Earlier iterations only produce the recycled inputs: no graph is kept.
            with torch.set_grad_enabled(grad_enabled and is_last):
                outputs = self.iteration(feats, prev)
            prev = {
                "m0_prev": outputs["msa_first_row"].detach(),
                "z_prev": outputs["pair"].detach(),
                "x_prev": outputs["final_atom_positions"].detach(),
            }
        outputs.update(self.auxiliary_heads(outputs))
        return outputs

    def iteration(self, feats: Batch, prev: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One pass through the network on one recycling slice of the features."""
        seq_mask = feats["seq_mask"]  # [B, N]
        pair_mask = seq_mask[..., :, None] * seq_mask[..., None, :]  # [B, N, N]
        msa_mask = feats["msa_mask"]  # [B, S, N]
        n_clust = feats["msa_feat"].shape[-3]

        m, z = self.input_embedder(feats["target_feat"], feats["residue_index"], feats["msa_feat"])
        # m: [B, S, N, c_m]  z: [B, N, N, c_z]
        if prev:
            m0_prev, z_prev, x_prev = prev["m0_prev"], prev["z_prev"], prev["x_prev"]
        else:
            m0_prev = m.new_zeros(m[..., 0, :, :].shape)
            z_prev = z.new_zeros(z.shape)
            x_prev = z.new_zeros((*seq_mask.shape, rc.atom_type_num, 3))
        # Positions stay in the structure module's float32 (not cast to the pair's dtype):
        # the recycling distogram bins them, and bf16 would move atoms across bin edges.
        x_prev = pseudo_beta_positions(feats["aatype"], x_prev)
        m0_emb, z_emb = self.recycling_embedder(m0_prev, z_prev, x_prev)
        m = torch.cat([m[..., :1, :, :] + m0_emb.unsqueeze(-3), m[..., 1:, :, :]], dim=-3)
        z = z + z_emb

        if self.config.template.enabled:
            z = z + self.embed_template_pair(feats, z, pair_mask)
            if self.config.template.embed_torsion_angles:
                a = self.template_angle_embedder(build_template_angle_feat(feats).to(m.dtype))
                m = torch.cat([m, a], dim=-3)  # [B, S + T, N, c_m]
                torsion_mask = feats["template_torsion_angles_mask"][..., 2].to(msa_mask.dtype)
                msa_mask = torch.cat([msa_mask, torsion_mask], dim=-2)

        e = self.extra_msa_embedder(build_extra_msa_feat(feats).to(z.dtype))
        z = self.extra_msa_stack(e, z, feats["extra_msa_mask"].to(z.dtype), pair_mask)

        m, z, s = self.evoformer_stack(m, z, msa_mask.to(m.dtype), pair_mask.to(z.dtype))
        out = {"msa": m[..., :n_clust, :, :], "msa_first_row": m[..., 0, :, :], "pair": z,
               "single": s}
        out.update(self.structure_module(s, z, feats["aatype"], seq_mask.to(s.dtype)))
        out["final_atom_positions"] = atom14_to_atom37(
            out["sm_positions"][..., -1, :, :, :],
            feats["residx_atom37_to_atom14"],
            feats["atom37_atom_exists"],
        )
        out["final_atom_mask"] = feats["atom37_atom_exists"]
        out["final_affine_tensor"] = out["sm_frames"][..., -1, :, :, :]
        return out

    def embed_template_pair(self, feats: Batch, z: torch.Tensor, pair_mask: torch.Tensor):
        """Template pair stack + pointwise attention: the pair update [B, N, N, c_z]."""
        t = self.template_pairs(feats, pair_mask.to(z.dtype), z.dtype)  # [B, T, N, N, c_t]
        template_mask = feats["template_mask"].to(z.dtype)  # [B, T]
        t = self.template_pointwise_attention(t, z, template_mask)
        # No templates at all: the update is exactly zero (not a uniform average).
        any_template = (template_mask.sum(dim=-1) > 0).to(t.dtype)
        return t * any_template[..., None, None, None]

    def template_pairs(self, feats: Batch, pair_mask: torch.Tensor, dtype: torch.dtype):
        """The templates' pair representation after their pair stack [B, T, N, N, c_t]: a
        function of the template features alone (not of z)."""
        t = build_template_pair_feat(feats, self.config.template).to(dtype)
        t = self.template_pair_embedder(t)  # [B, T, N, N, c_t]
        return self.template_pair_stack(t, pair_mask)
