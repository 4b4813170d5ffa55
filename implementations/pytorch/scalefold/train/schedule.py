"""Learning-rate schedules: the MLPerf closed-division warm-up, and AlphaFold2's
pretraining schedule for runs from scratch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up from `warmup_lr_init` to `base_lr` over `warmup_iters`, then constant;
    optionally `final_lr` after `decay_after_iters` (AlphaFold2's pretraining drop).

    Iterations are 1-based, as the reference counts them. The warm-up follows the
    reference's evenly spaced values: the first warm-up step uses `warmup_lr_init`, the
    last `base_lr`.
    """

    base_lr: float = 1e-3
    warmup_lr_init: float = 1e-5
    warmup_iters: int = 0
    decay_after_iters: int | None = None
    final_lr: float | None = None

    def __post_init__(self) -> None:
        if self.warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {self.warmup_iters}")
        if (self.decay_after_iters is None) != (self.final_lr is None):
            raise ValueError("decay_after_iters and final_lr go together")

    @classmethod
    def alphafold_pretraining(cls) -> LRSchedule:
        """AlphaFold2 / OpenFold initial training from scratch: 1e-3 after a 1000-step
        warm-up from 1e-6, down to 5e-5 after 60k steps (the reference's defaults)."""
        return cls(base_lr=1e-3, warmup_lr_init=1e-6, warmup_iters=1000,
                   decay_after_iters=60_000, final_lr=5e-5)

    def lr_at(self, iteration: int) -> float:
        if iteration < 1:
            raise ValueError(f"iterations are 1-based, got {iteration}")
        if iteration <= self.warmup_iters:
            if self.warmup_iters == 1:
                return self.base_lr
            frac = (iteration - 1) / (self.warmup_iters - 1)
            return self.warmup_lr_init + (self.base_lr - self.warmup_lr_init) * frac
        if self.decay_after_iters is not None and iteration > self.decay_after_iters:
            assert self.final_lr is not None
            return self.final_lr
        return self.base_lr
