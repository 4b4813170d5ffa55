"""Template embedding (AlphaFold2 supplement, 1.7.1, Algorithms 16 and 17)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from scalefold.geometry import residue_constants as rc
from scalefold.geometry.rigid import Rigid
from scalefold.model.attention import Attention
from scalefold.model.config import TemplateConfig
from scalefold.model.dropout import dropout_columnwise, dropout_rowwise
from scalefold.model.embedders import distogram_one_hot
from scalefold.model.msa import Transition
from scalefold.model.pair import TriangleAttention, TriangleMultiplication
from scalefold.model.primitives import LayerNorm, Linear


def build_template_angle_feat(feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """[*, T, N, 57]: aatype one-hot, torsion sin/cos, alternative sin/cos, torsion mask."""
    sc = feats["template_torsion_angles_sin_cos"]
    alt = feats["template_alt_torsion_angles_sin_cos"]
    return torch.cat(
        [
            F.one_hot(feats["template_aatype"].long(), 22).to(sc.dtype),
            sc.flatten(-2),
            alt.flatten(-2),
            feats["template_torsion_angles_mask"],
        ],
        dim=-1,
    )


def build_template_pair_feat(feats: dict[str, torch.Tensor], cfg: TemplateConfig) -> torch.Tensor:
    """[*, T, N, N, 88]: the template pair features of Algorithm 2, line 9.

    Channels: distogram of pseudo-beta (39), pseudo-beta pair mask (1), aatype one-hot of
    j (22) and of i (22), unit vectors in the backbone frame of i (3; zero unless
    enabled), backbone pair mask (1); everything multiplied by the backbone pair mask.
    """
    pb = feats["template_pseudo_beta"]  # [*, T, N, 3]
    pb_mask = feats["template_pseudo_beta_mask"]  # [*, T, N]
    dtype = pb.dtype
    n_res = pb.shape[-2]
    pb_mask_2d = pb_mask[..., :, None] * pb_mask[..., None, :]
    dgram = distogram_one_hot(
        pb, cfg.distogram_min_bin, cfg.distogram_max_bin, cfg.distogram_num_bins, cfg.feat_inf
    )
    aatype = F.one_hot(feats["template_aatype"].long(), rc.restype_num + 2).to(dtype)
    aatype_j = aatype[..., None, :, :].expand(*aatype.shape[:-2], n_res, n_res, -1)
    aatype_i = aatype[..., :, None, :].expand(*aatype.shape[:-2], n_res, n_res, -1)

    n, ca, c = (rc.atom_order[a] for a in ("N", "CA", "C"))
    pos = feats["template_all_atom_positions"]  # [*, T, N, 37, 3]
    atom_mask = feats["template_all_atom_mask"]  # [*, T, N, 37]
    bb_mask = atom_mask[..., n] * atom_mask[..., ca] * atom_mask[..., c]
    bb_mask_2d = bb_mask[..., :, None] * bb_mask[..., None, :]  # [*, T, N, N]
    if cfg.use_unit_vector:
        frames = Rigid.make_transform_from_reference(
            pos[..., n, :], pos[..., ca, :], pos[..., c, :], eps=cfg.feat_eps
        )
        # Vector from residue i to j expressed in i's backbone frame.
        vec = frames.unsqueeze(-1).invert_apply(frames.trans.unsqueeze(-3))  # [*, T, N, N, 3]
        inv_dist = torch.rsqrt(cfg.feat_eps + torch.sum(vec**2, dim=-1)) * bb_mask_2d
        unit_vector = vec * inv_dist.unsqueeze(-1)
    else:
        unit_vector = pb.new_zeros((*bb_mask_2d.shape, 3))
    t = torch.cat(
        [dgram, pb_mask_2d.unsqueeze(-1), aatype_j, aatype_i, unit_vector, bb_mask_2d.unsqueeze(-1)],
        dim=-1,
    )
    return t * bb_mask_2d.unsqueeze(-1)


class TemplateAngleEmbedder(nn.Module):
    def __init__(self, feat_dim: int, c_m: int) -> None:
        super().__init__()
        self.linear_1 = Linear(feat_dim, c_m, init="relu")
        self.linear_2 = Linear(c_m, c_m, init="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(torch.relu(self.linear_1(x)))


class TemplatePairEmbedder(nn.Module):
    def __init__(self, feat_dim: int, c_t: int) -> None:
        super().__init__()
        self.linear = Linear(feat_dim, c_t, init="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class TemplatePairBlock(nn.Module):
    """Triangle attention first, then triangle multiplication (AlphaFold's template order)."""

    def __init__(self, cfg: TemplateConfig) -> None:
        super().__init__()
        c_t = cfg.c_t
        self.tri_att_start = TriangleAttention(
            c_t, cfg.c_hidden_tri_att, cfg.num_heads_tri, cfg.inf, starting=True
        )
        self.tri_att_end = TriangleAttention(
            c_t, cfg.c_hidden_tri_att, cfg.num_heads_tri, cfg.inf, starting=False
        )
        self.tri_mul_out = TriangleMultiplication(c_t, cfg.c_hidden_tri_mul, outgoing=True)
        self.tri_mul_in = TriangleMultiplication(c_t, cfg.c_hidden_tri_mul, outgoing=False)
        self.pair_transition = Transition(c_t, cfg.pair_transition_n)
        self.dropout_row = dropout_rowwise(cfg.dropout_rate)
        self.dropout_col = dropout_columnwise(cfg.dropout_rate)

    def forward(self, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # t: [*, T, N, N, c_t]  mask: [*, 1, N, N]
        t = self.dropout_row.update(t, self.tri_att_start, t, mask)
        t = self.dropout_col.update(t, self.tri_att_end, t, mask)
        t = self.dropout_row.update(t, self.tri_mul_out, t, mask)
        t = self.dropout_row.update(t, self.tri_mul_in, t, mask)
        t = self.pair_transition.added_to(t, t)
        return t


class TemplatePairStack(nn.Module):
    def __init__(self, cfg: TemplateConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([TemplatePairBlock(cfg) for _ in range(cfg.num_blocks)])
        self.layer_norm = LayerNorm(cfg.c_t)
        self.activation_checkpointing = False

    def forward(self, t: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        # t: [*, T, N, N, c_t]  pair_mask: [*, N, N]
        mask = pair_mask.unsqueeze(-3)
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                t = checkpoint(block, t, mask, use_reentrant=False)
            else:
                t = block(t, mask)
        return self.layer_norm(t)


class TemplatePointwiseAttention(nn.Module):
    """Each pair position attends over the templates' pair embeddings (Algorithm 17)."""

    def __init__(self, c_t: int, c_z: int, c_hidden: int, num_heads: int, inf: float) -> None:
        super().__init__()
        self.inf = inf
        self.mha = Attention(c_z, c_t, c_hidden, num_heads, gating=False, c_out=c_z)

    def forward(
        self, t: torch.Tensor, z: torch.Tensor, template_mask: torch.Tensor
    ) -> torch.Tensor:
        # t: [*, T, N, N, c_t]  z: [*, N, N, c_z]  template_mask: [*, T]
        t = t.movedim(-4, -2)  # [*, N, N, T, c_t]
        bias = (self.inf * (template_mask - 1.0))[..., None, None, None, None, :]
        # bias: [*, 1, 1, 1, 1, T] against logits [*, N, N, H, 1, T]
        out = self.mha(z.unsqueeze(-2), t, [bias])  # [*, N, N, 1, c_z]
        return out.squeeze(-2)
