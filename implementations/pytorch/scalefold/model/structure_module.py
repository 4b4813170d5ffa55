"""Structure module (AlphaFold2 supplement, 1.8: Algorithms 20–25)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scalefold.geometry.all_atom import frames_to_atom14_positions, torsion_angles_to_frames
from scalefold.geometry.rigid import Rigid, quat_backbone_update, quat_to_rot
from scalefold.model.config import StructureModuleConfig
from scalefold.model.primitives import LayerNorm, Linear


def _split_xyz(x: torch.Tensor) -> torch.Tensor:
    # [*, 3*P] laid out as (all x, all y, all z) -> [*, P, 3]
    return torch.stack(torch.chunk(x, 3, dim=-1), dim=-1)


class InvariantPointAttention(nn.Module):
    """Algorithm 22. Points are expressed in the current backbone frames (nm units)."""

    def __init__(self, cfg: StructureModuleConfig) -> None:
        super().__init__()
        h, c = cfg.num_heads_ipa, cfg.c_hidden_ipa
        pq, pv = cfg.num_qk_points, cfg.num_v_points
        self.num_heads, self.c_hidden, self.pq, self.pv = h, c, pq, pv
        self.inf, self.eps = cfg.inf, cfg.eps
        # softplus⁻¹(1): the point weights start at one (AlphaFold's initialisation).
        self.head_weights = nn.Parameter(torch.full((h,), math.log(math.e - 1.0)))
        self.linear_q = Linear(cfg.c_s, h * c)
        self.linear_kv = Linear(cfg.c_s, 2 * h * c)
        self.linear_q_points = Linear(cfg.c_s, h * pq * 3)
        self.linear_kv_points = Linear(cfg.c_s, h * (pq + pv) * 3)
        self.linear_b = Linear(cfg.c_z, h)
        self.linear_out = Linear(h * (cfg.c_z + c + pv * 4), cfg.c_s, init="final")

    def forward(
        self, s: torch.Tensor, z: torch.Tensor, r: Rigid, mask: torch.Tensor
    ) -> torch.Tensor:
        # s: [*, N, c_s]  z: [*, N, N, c_z]  r: Rigid [*, N]  mask: [*, N]
        h, c, pq, pv = self.num_heads, self.c_hidden, self.pq, self.pv
        q = self.linear_q(s).unflatten(-1, (h, c))  # [*, N, H, c]
        k, v = self.linear_kv(s).unflatten(-1, (h, 2 * c)).split(c, dim=-1)  # [*, N, H, c]

        r_pts = r.unsqueeze(-1)
        q_pts = r_pts.apply(_split_xyz(self.linear_q_points(s)))  # [*, N, H*pq, 3]
        q_pts = q_pts.unflatten(-2, (h, pq))  # [*, N, H, pq, 3]
        kv_pts = r_pts.apply(_split_xyz(self.linear_kv_points(s)))  # [*, N, H*(pq+pv), 3]
        k_pts, v_pts = kv_pts.unflatten(-2, (h, pq + pv)).split([pq, pv], dim=-2)

        # Three logit terms, each scaled to unit variance at initialisation.
        scalar = torch.einsum("...ihc,...jhc->...hij", q, k) * math.sqrt(1.0 / (3 * c))
        pair = self.linear_b(z).movedim(-1, -3) * math.sqrt(1.0 / 3)  # [*, H, N, N]
        d2 = torch.sum(
            (q_pts[..., :, None, :, :, :] - k_pts[..., None, :, :, :, :]) ** 2, dim=(-1, -2)
        )  # [*, N, N, H]
        point_w = F.softplus(self.head_weights) * math.sqrt(1.0 / (3 * (pq * 9.0 / 2)))
        points = (-0.5 * d2 * point_w).movedim(-1, -3)  # [*, H, N, N]
        mask_2d = mask[..., :, None] * mask[..., None, :]
        logits = scalar + pair + points + (self.inf * (mask_2d - 1.0)).unsqueeze(-3)
        a = torch.softmax(logits, dim=-1)  # [*, H, N, N]

        o = torch.einsum("...hij,...jhc->...ihc", a, v).flatten(-2)  # [*, N, H*c]
        o_pts = torch.einsum("...hij,...jhpx->...ihpx", a, v_pts)  # [*, N, H, pv, 3]
        o_pts = r.unsqueeze(-1).unsqueeze(-1).invert_apply(o_pts).flatten(-3, -2)
        # o_pts: [*, N, H*pv, 3] in the local frame of each residue
        o_pts_norm = torch.sqrt(torch.sum(o_pts**2, dim=-1) + self.eps)  # [*, N, H*pv]
        o_pair = torch.einsum("...hij,...ijc->...ihc", a, z).flatten(-2)  # [*, N, H*c_z]
        feats = [o, *torch.unbind(o_pts, dim=-1), o_pts_norm, o_pair]
        return self.linear_out(torch.cat(feats, dim=-1))


class StructureModuleTransition(nn.Module):
    def __init__(self, c: int, dropout_rate: float) -> None:
        super().__init__()
        self.linear_1 = Linear(c, c, init="relu")
        self.linear_2 = Linear(c, c, init="relu")
        self.linear_3 = Linear(c, c, init="final")
        self.layer_norm = LayerNorm(c)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.linear_1(s))
        x = torch.relu(self.linear_2(x))
        s = s + self.linear_3(x)
        return self.layer_norm(self.dropout(s))


class BackboneUpdate(nn.Module):
    """Algorithm 23: a quaternion (b, c, d) and translation update per residue."""

    def __init__(self, c_s: int) -> None:
        super().__init__()
        self.linear = Linear(c_s, 6, init="final")

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.linear(s)


class AngleResnetBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.linear_1 = Linear(c, c, init="relu")
        self.linear_2 = Linear(c, c, init="final")

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a + self.linear_2(torch.relu(self.linear_1(torch.relu(a))))


class AngleResnet(nn.Module):
    """Predicts 7 torsion angles as (sin, cos) pairs (Algorithm 20, lines 11–14)."""

    def __init__(self, cfg: StructureModuleConfig) -> None:
        super().__init__()
        c = cfg.c_hidden_ang_res
        self.num_angles = cfg.num_angles
        self.eps = cfg.eps
        self.linear_in = Linear(cfg.c_s, c)
        self.linear_initial = Linear(cfg.c_s, c)
        self.layers = nn.ModuleList([AngleResnetBlock(c) for _ in range(cfg.num_ang_res_blocks)])
        self.linear_out = Linear(c, cfg.num_angles * 2)

    def forward(
        self, s: torch.Tensor, s_initial: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.linear_in(torch.relu(s)) + self.linear_initial(torch.relu(s_initial))
        for layer in self.layers:
            a = layer(a)
        raw = self.linear_out(torch.relu(a)).unflatten(-1, (self.num_angles, 2))  # [*, N, 7, 2]
        norm = torch.sqrt(torch.clamp(torch.sum(raw**2, dim=-1, keepdim=True), min=self.eps))
        return raw, raw / norm


class StructureModule(nn.Module):
    """Algorithm 20. The eight layers share their weights: `layer` is one of them (lines
    6-21, without the loss terms), the unit `compile_structure_module` compiles."""

    LAYER_OUTPUTS = ("frames", "sidechain_frames", "unnormalized_angles", "angles",
                     "positions", "states")

    def __init__(self, cfg: StructureModuleConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer_norm_s = LayerNorm(cfg.c_s)
        self.layer_norm_z = LayerNorm(cfg.c_z)
        self.linear_in = Linear(cfg.c_s, cfg.c_s)
        self.ipa = InvariantPointAttention(cfg)
        self.ipa_dropout = nn.Dropout(cfg.dropout_rate)
        self.layer_norm_ipa = LayerNorm(cfg.c_s)
        self.transition = StructureModuleTransition(cfg.c_s, cfg.dropout_rate)
        self.bb_update = BackboneUpdate(cfg.c_s)
        self.angle_resnet = AngleResnet(cfg)

    def layer(
        self, s: torch.Tensor, s_initial: torch.Tensor, z: torch.Tensor, quat: torch.Tensor,
        trans: torch.Tensor, aatype: torch.Tensor, mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        # s, s_initial: [*, N, c_s]  z: [*, N, N, c_z]  quat: [*, N, 4]  trans: [*, N, 3]
        r = Rigid(quat_to_rot(quat), trans)
        s = s + self.ipa(s, z, r, mask)
        s = self.layer_norm_ipa(self.ipa_dropout(s))
        s = self.transition(s)
        quat, trans = quat_backbone_update(quat, trans, self.bb_update(s))
        backbone = Rigid(quat_to_rot(quat), trans).scale_translation(self.cfg.scale_factor)
        raw_angles, angles = self.angle_resnet(s, s_initial)
        frames = torsion_angles_to_frames(backbone, angles, aatype)  # [*, N, 8]
        positions = frames_to_atom14_positions(frames, aatype)  # [*, N, 14, 3]
        out = {"frames": backbone.to_tensor_4x4(), "sidechain_frames": frames.to_tensor_4x4(),
               "unnormalized_angles": raw_angles, "angles": angles, "positions": positions,
               "states": s}
        # Gradients flow to the next layer through translations only (Algorithm 20, l. 20).
        return s, quat.detach(), trans, out

    def forward(
        self, s: torch.Tensor, z: torch.Tensor, aatype: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        # s: [*, N, c_s]  z: [*, N, N, c_z]  aatype: [*, N]  mask: [*, N]
        s = self.layer_norm_s(s)
        z = self.layer_norm_z(z)
        s_initial = s
        s = self.linear_in(s)
        quat = s.new_zeros((*s.shape[:-1], 4))
        quat[..., 0] = 1.0  # identity rotation, w-first
        trans = s.new_zeros((*s.shape[:-1], 3))

        outs: dict[str, list[torch.Tensor]] = {k: [] for k in self.LAYER_OUTPUTS}
        for _ in range(self.cfg.num_blocks):
            s, quat, trans, layer_out = self.layer(s, s_initial, z, quat, trans, aatype, mask)
            for k in self.LAYER_OUTPUTS:
                outs[k].append(layer_out[k])

        layer_dim = s.dim() - 2  # after the batch dims: [*, S, N, ...]
        result = {f"sm_{k}": torch.stack(v, dim=layer_dim) for k, v in outs.items()}
        result["sm_single"] = s
        return result
