"""Which ranks train and which evaluate, and the process groups that connect them.

With `num_async_eval_ranks = E > 0`, the last E ranks of the world only evaluate: the
training leader (rank 0) sends them the SWA weights every `val_every_iters` steps and
training goes on without waiting; the evaluation leader (the first evaluation rank)
reports the accuracy and tells the trainers when the target is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from scalefold.train.distributed import DistEnv


@dataclass(frozen=True)
class Topology:
    rank: int
    world_size: int
    num_eval_ranks: int
    dap_size: int = 1
    train_group: Any = None  # None: the default group (or no distribution at all)
    eval_group: Any = None
    dap_group: Any = None  # ranks that share one sample (dynamic axial parallelism)
    # Asynchronous evaluation's small messages between rank 0 and the evaluation leader
    # (headers, the stop signal) travel as host tensors over gloo. Under NCCL, a receive
    # posted early (rank 0 waits for the stop signal all run) holds the pair's stream, and
    # the weights sent behind it would never leave: the run deadlocks at its first
    # evaluation. Two ranks only: a gloo group connects every pair of its members.
    control_group: Any = None

    @property
    def dp_rank(self) -> int:
        """Data-parallel index of a training rank: ranks of one DAP group share it."""
        return max(self.train_rank, 0) // self.dap_size

    @property
    def dp_world(self) -> int:
        return self.num_train_ranks // self.dap_size

    @property
    def num_train_ranks(self) -> int:
        return self.world_size - self.num_eval_ranks

    @property
    def is_async(self) -> bool:
        return self.num_eval_ranks > 0

    @property
    def is_eval_rank(self) -> bool:
        return self.rank >= self.num_train_ranks

    @property
    def train_rank(self) -> int:
        return self.rank if not self.is_eval_rank else -1

    @property
    def evaluates(self) -> bool:
        """Whether this rank evaluates: an evaluation rank, or every rank when evaluation
        is synchronous (the training ranks of an asynchronous run never do)."""
        return self.is_eval_rank or not self.is_async

    @property
    def eval_leader(self) -> int:
        """Global rank that reports evaluations: rank 0 when evaluation is synchronous."""
        return self.num_train_ranks if self.is_async else 0

    @property
    def eval_rank(self) -> int:
        """This rank's index among the ranks that evaluate."""
        return self.rank - self.num_train_ranks if self.is_async else self.rank

    @property
    def eval_world(self) -> int:
        return self.num_eval_ranks if self.is_async else self.world_size


def make_topology(denv: DistEnv, num_async_eval_ranks: int, dap_size: int = 1) -> Topology:
    """Create the groups; every rank must call this, in the same order.

    Training ranks are the first world − E; consecutive blocks of `dap_size` of them form
    the DAP groups (one node's GPUs, so the all-to-alls stay on NVLink).
    """
    e = num_async_eval_ranks
    if e < 0 or (e > 0 and e >= denv.world_size):
        raise ValueError(
            f"num_async_eval_ranks={e} needs at least one training rank "
            f"(world size {denv.world_size})"
        )
    n_train = denv.world_size - e
    if dap_size < 1 or n_train % dap_size:
        raise ValueError(f"DAP size {dap_size} must divide the {n_train} training ranks")
    train = evals = dap = control = None
    if e > 0:
        train = dist.new_group(list(range(n_train)))
        evals = dist.new_group(list(range(n_train, denv.world_size)))
        control = dist.new_group([0, n_train], backend="gloo")  # rank 0, the eval leader
    if dap_size > 1:
        for first in range(0, n_train, dap_size):
            ranks = list(range(first, first + dap_size))
            group = dist.new_group(ranks)
            if denv.rank in ranks:
                dap = group
    return Topology(rank=denv.rank, world_size=denv.world_size, num_eval_ranks=e,
                    dap_size=dap_size, train_group=train, eval_group=evals, dap_group=dap,
                    control_group=control)
