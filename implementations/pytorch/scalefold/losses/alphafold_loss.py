"""The AlphaFold2 training loss as the MLPerf reference assembles it.

total = mean over samples of  sqrt(min(seq_length, N)) * sum_t weight_t * term_t

with N the padded crop length (the reference's `batch["aatype"].size(1)`) and seq_length
the cropped length, so that samples at least as long as the crop all weigh sqrt(N) and
shorter ones sqrt(length) (AF2 suppl. 1.11.4). Terms whose weight is 0 are still
computed for the breakdown, without autograd, and are not part of the total.

The forward pass is shape-static and never reads a device value on the host, so it can
be captured in a CUDA graph; checking for NaN/inf is left to the caller
(`check_finite_losses`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Mapping

import torch
from torch import nn

from scalefold.losses.chi import chi_pi_periodic_table, supervised_chi_loss
from scalefold.losses.config import LossConfig
from scalefold.losses.distogram import distogram_loss, distogram_squared_boundaries
from scalefold.losses.experimentally_resolved import experimentally_resolved_loss
from scalefold.losses.fape import UseClamped, backbone_loss, sidechain_loss
from scalefold.losses.masked_msa import masked_msa_loss
from scalefold.losses.plddt import plddt_loss
from scalefold.losses.renaming import compute_renamed_ground_truth
from scalefold.losses.tm import tm_loss
from scalefold.losses.violation import (
    ViolationTables,
    find_structural_violations,
    make_violation_tables,
    violation_loss,
)

# Breakdown keys (the reference's names, plus the two FAPE parts).
TERM_NAMES = (
    "fape",
    "supervised_chi",
    "distogram",
    "masked_msa",
    "plddt_loss",
    "experimentally_resolved",
    "violation",
    "tm",
)


class NonFiniteLossError(FloatingPointError):
    """A loss term is NaN or infinite; `terms` names the offending breakdown entries."""

    def __init__(self, terms: Mapping[str, float]):
        self.terms = dict(terms)
        detail = ", ".join(f"{name}={value}" for name, value in self.terms.items())
        super().__init__(f"non-finite loss term(s): {detail}")


def check_finite_losses(breakdown: Mapping[str, torch.Tensor]) -> None:
    """Raise `NonFiniteLossError` naming every non-finite entry of a loss breakdown.

    One device-to-host transfer for the whole breakdown; call it outside captured
    regions, e.g. every logging interval.
    """
    names = list(breakdown)
    if not names:
        return
    values = torch.stack([breakdown[n].detach().float().reshape(()) for n in names]).cpu()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        raise NonFiniteLossError(
            {n: float(v) for n, v, ok in zip(names, values.tolist(), finite.tolist()) if not ok}
        )


def use_clamped_fape_for_sample(seed: int, probability: float = 0.9) -> float:
    """The reference's per-sample draw: 1.0 (clamped) with the given probability.

    Mirrors openfold/data/features.py `process_features` in "train" mode:
    `random.Random(seed).uniform(0, 1) < probability`, with `seed` the sample's own
    data-pipeline seed. The value is constant across recycling iterations.
    """
    return float(random.Random(seed).uniform(0, 1) < probability)


def draw_use_clamped_fape(
    batch_size: int,
    probability: float = 0.9,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """[batch_size] 0/1 floats drawn from a torch generator, for loops that do not carry
    a per-sample seed. Same distribution as `use_clamped_fape_for_sample`, different stream.
    """
    u = torch.rand(batch_size, generator=generator)
    return (u < probability).to(dtype=torch.float32, device=device)


def _loss_dtype(t: torch.Tensor) -> torch.dtype:
    # Reduced-precision activations are promoted; float64 (gradcheck) is kept.
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


class AlphaFoldLoss(nn.Module):
    """Total training loss and its per-term breakdown (see module docstring)."""

    def __init__(self, config: LossConfig | None = None):
        super().__init__()
        self.config = config if config is not None else LossConfig.mlperf()
        cfg = self.config
        self.register_buffer("chi_pi_periodic", chi_pi_periodic_table(), persistent=False)
        self.register_buffer(
            "distogram_sq_boundaries",
            distogram_squared_boundaries(
                cfg.distogram.min_bin, cfg.distogram.max_bin, cfg.distogram.num_bins
            ),
            persistent=False,
        )
        tables = make_violation_tables(
            cfg.violation.violation_tolerance_factor, cfg.violation.clash_overlap_tolerance
        )
        self.register_buffer("atom37_radius", tables.atom37_radius, persistent=False)
        self.register_buffer("atom14_lower_bound", tables.lower_bound, persistent=False)
        self.register_buffer("atom14_upper_bound", tables.upper_bound, persistent=False)

    def _wanted(self, weight: float) -> bool:
        return weight != 0.0 or self.config.compute_zero_weight_terms

    @staticmethod
    def _grad_scope(weight: float) -> contextlib.AbstractContextManager:
        # A zero-weight term only feeds the breakdown: keep it out of the autograd graph.
        return contextlib.nullcontext() if weight != 0.0 else torch.no_grad()

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        use_clamped_fape: UseClamped = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute the loss.

        Args:
            outputs: model outputs (docs/CONTRACTS.md), leading batch dim B.
            batch: features of the final recycling iteration, leading batch dim B.
            use_clamped_fape: per-sample [B] 0/1 tensor (or a bool for the whole batch)
                choosing clamped backbone FAPE. None falls back to
                batch["use_clamped_fape"] and, if absent, to clamped FAPE (what the
                reference does in evaluation).

        Returns:
            (total scalar connected to the graph, breakdown of detached batch means of
            the unweighted terms: one entry per term in TERM_NAMES (tm only when
            enabled; zero-weight terms only with `compute_zero_weight_terms`),
            fape_backbone, fape_sidechain, weighted_total_loss and
            scaled_weighted_total_loss).
        """
        aatype = batch["aatype"]
        if aatype.dim() != 2:
            raise ValueError(f"batch['aatype'] must be [B, N], got {tuple(aatype.shape)}")
        num_res = aatype.shape[1]
        if num_res == 0:
            raise ValueError("the loss of a zero-length chain is undefined")
        # Losses are evaluated in float32 at least, whatever autocast region encloses us.
        device_type = outputs["sm_frames"].device.type
        no_autocast = (
            torch.autocast(device_type=device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type)
            else contextlib.nullcontext()
        )
        with no_autocast:
            return self._forward(outputs, batch, use_clamped_fape, num_res)

    def _forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        batch: Mapping[str, torch.Tensor],
        use_clamped_fape: UseClamped,
        num_res: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        dtype = _loss_dtype(outputs["sm_frames"])

        def out(key: str) -> torch.Tensor:
            value = outputs[key]
            return value.to(dtype) if value.is_floating_point() else value

        def feat(key: str) -> torch.Tensor:
            value = batch[key]
            return value.to(dtype) if value.is_floating_point() else value

        if use_clamped_fape is None:
            use_clamped_fape = batch.get("use_clamped_fape")
        if isinstance(use_clamped_fape, torch.Tensor):
            use_clamped_fape = use_clamped_fape.to(device=outputs["sm_frames"].device, dtype=dtype)

        sm_positions = out("sm_positions")  # [B, S, N, 14, 3]
        renamed = compute_renamed_ground_truth(
            atom14_gt_positions=feat("atom14_gt_positions"),
            atom14_alt_gt_positions=feat("atom14_alt_gt_positions"),
            atom14_atom_is_ambiguous=feat("atom14_atom_is_ambiguous"),
            atom14_gt_exists=feat("atom14_gt_exists"),
            atom14_alt_gt_exists=feat("atom14_alt_gt_exists"),
            atom14_pred_positions=sm_positions[:, -1],
        )

        losses: dict[str, torch.Tensor] = {}
        weights: dict[str, float] = {}

        fape_cfg = cfg.fape
        weights["fape"] = fape_cfg.weight
        with self._grad_scope(fape_cfg.weight * fape_cfg.backbone_weight):
            backbone = backbone_loss(
                backbone_rigid_tensor=feat("backbone_rigid_tensor"),
                backbone_rigid_mask=feat("backbone_rigid_mask"),
                traj=out("sm_frames"),
                use_clamped_fape=use_clamped_fape,
                clamp_distance=fape_cfg.backbone_clamp_distance,
                loss_unit_distance=fape_cfg.backbone_loss_unit_distance,
                eps=fape_cfg.eps,
            )
        with self._grad_scope(fape_cfg.weight * fape_cfg.sidechain_weight):
            sidechain = sidechain_loss(
                sidechain_frames=out("sm_sidechain_frames"),
                sidechain_atom_pos=sm_positions,
                rigidgroups_gt_frames=feat("rigidgroups_gt_frames"),
                rigidgroups_alt_gt_frames=feat("rigidgroups_alt_gt_frames"),
                rigidgroups_gt_exists=feat("rigidgroups_gt_exists"),
                renamed_atom14_gt_positions=renamed["renamed_atom14_gt_positions"],
                renamed_atom14_gt_exists=renamed["renamed_atom14_gt_exists"],
                alt_naming_is_better=renamed["alt_naming_is_better"],
                clamp_distance=fape_cfg.sidechain_clamp_distance,
                length_scale=fape_cfg.sidechain_length_scale,
                eps=fape_cfg.eps,
            )
        losses["fape"] = backbone * fape_cfg.backbone_weight + sidechain * fape_cfg.sidechain_weight

        chi_cfg = cfg.supervised_chi
        weights["supervised_chi"] = chi_cfg.weight
        with self._grad_scope(chi_cfg.weight):
            losses["supervised_chi"] = supervised_chi_loss(
                angles_sin_cos=out("sm_angles"),
                unnormalized_angles_sin_cos=out("sm_unnormalized_angles"),
                aatype=batch["aatype"],
                seq_mask=feat("seq_mask"),
                chi_mask=feat("chi_mask"),
                chi_angles_sin_cos=feat("chi_angles_sin_cos"),
                chi_weight=chi_cfg.chi_weight,
                angle_norm_weight=chi_cfg.angle_norm_weight,
                eps=chi_cfg.eps,
                chi_pi_periodic=self.chi_pi_periodic,
            )

        dgram_cfg = cfg.distogram
        weights["distogram"] = dgram_cfg.weight
        with self._grad_scope(dgram_cfg.weight):
            losses["distogram"] = distogram_loss(
                logits=out("distogram_logits"),
                pseudo_beta=feat("pseudo_beta"),
                pseudo_beta_mask=feat("pseudo_beta_mask"),
                min_bin=dgram_cfg.min_bin,
                max_bin=dgram_cfg.max_bin,
                num_bins=dgram_cfg.num_bins,
                eps=dgram_cfg.eps,
                squared_boundaries=self.distogram_sq_boundaries.to(dtype),
            )

        msa_cfg = cfg.masked_msa
        weights["masked_msa"] = msa_cfg.weight
        with self._grad_scope(msa_cfg.weight):
            losses["masked_msa"] = masked_msa_loss(
                logits=out("masked_msa_logits"),
                true_msa=batch["true_msa"],
                bert_mask=feat("bert_mask"),
                eps=msa_cfg.eps,
            )

        plddt_cfg = cfg.plddt
        weights["plddt_loss"] = plddt_cfg.weight
        with self._grad_scope(plddt_cfg.weight):
            losses["plddt_loss"] = plddt_loss(
                logits=out("lddt_logits"),
                all_atom_pred_pos=out("final_atom_positions"),
                all_atom_positions=feat("all_atom_positions"),
                all_atom_mask=feat("all_atom_mask"),
                resolution=feat("resolution"),
                cutoff=plddt_cfg.cutoff,
                num_bins=plddt_cfg.num_bins,
                min_resolution=plddt_cfg.min_resolution,
                max_resolution=plddt_cfg.max_resolution,
                eps=plddt_cfg.eps,
            )

        er_cfg = cfg.experimentally_resolved
        if self._wanted(er_cfg.weight):
            weights["experimentally_resolved"] = er_cfg.weight
            with self._grad_scope(er_cfg.weight):
                losses["experimentally_resolved"] = experimentally_resolved_loss(
                    logits=out("experimentally_resolved_logits"),
                    atom37_atom_exists=feat("atom37_atom_exists"),
                    all_atom_mask=feat("all_atom_mask"),
                    resolution=feat("resolution"),
                    min_resolution=er_cfg.min_resolution,
                    max_resolution=er_cfg.max_resolution,
                    eps=er_cfg.eps,
                )

        viol_cfg = cfg.violation
        if self._wanted(viol_cfg.weight):
            weights["violation"] = viol_cfg.weight
            with self._grad_scope(viol_cfg.weight):
                violations = find_structural_violations(
                    atom14_pred_positions=sm_positions[:, -1],
                    aatype=batch["aatype"],
                    residue_index=batch["residue_index"],
                    atom14_atom_exists=feat("atom14_atom_exists"),
                    residx_atom14_to_atom37=batch["residx_atom14_to_atom37"],
                    violation_tolerance_factor=viol_cfg.violation_tolerance_factor,
                    clash_overlap_tolerance=viol_cfg.clash_overlap_tolerance,
                    tables=ViolationTables(
                        self.atom37_radius, self.atom14_lower_bound, self.atom14_upper_bound
                    ),
                )
                losses["violation"] = violation_loss(
                    violations, feat("atom14_atom_exists"), eps=viol_cfg.eps
                )

        tm_cfg = cfg.tm
        if tm_cfg.enabled and self._wanted(tm_cfg.weight):
            weights["tm"] = tm_cfg.weight
            with self._grad_scope(tm_cfg.weight):
                losses["tm"] = tm_loss(
                    logits=out("tm_logits"),
                    final_affine_tensor=out("final_affine_tensor"),
                    backbone_rigid_tensor=feat("backbone_rigid_tensor"),
                    backbone_rigid_mask=feat("backbone_rigid_mask"),
                    resolution=feat("resolution"),
                    max_bin=tm_cfg.max_bin,
                    num_bins=tm_cfg.num_bins,
                    min_resolution=tm_cfg.min_resolution,
                    max_resolution=tm_cfg.max_resolution,
                    eps=tm_cfg.eps,
                )

        batch_size = batch["aatype"].shape[0]
        weighted_total = torch.zeros(batch_size, dtype=dtype, device=backbone.device)
        for name, term in losses.items():
            if weights[name] == 0.0:
                continue
            weighted = term * weights[name]
            if cfg.zero_nonfinite_terms:
                weighted = torch.where(
                    torch.isfinite(weighted).all(), weighted, torch.zeros_like(weighted)
                )
            weighted_total = weighted_total + weighted

        seq_length = batch["seq_length"].to(device=weighted_total.device, dtype=dtype)
        if seq_length.shape != (batch_size,):
            raise ValueError(f"batch['seq_length'] must be [B], got {tuple(seq_length.shape)}")
        scale = torch.sqrt(torch.clamp(seq_length, max=float(num_res)))
        scaled_total = scale * weighted_total  # [B]

        breakdown = {name: term.detach().mean() for name, term in losses.items()}
        breakdown["fape_backbone"] = backbone.detach().mean()
        breakdown["fape_sidechain"] = sidechain.detach().mean()
        breakdown["weighted_total_loss"] = weighted_total.detach().mean()
        breakdown["scaled_weighted_total_loss"] = scaled_total.detach().mean()
        return scaled_total.mean(), breakdown
