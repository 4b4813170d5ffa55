"""Asynchronous evaluation: the messages between the trainers and the evaluation ranks.

Protocol (point-to-point between the training leader, rank 0, and the evaluation
leader; collectives inside each group):
  trainer 0 → eval leader, at every evaluation point: header [iteration, 0], then the
      flattened fp32 SWA weights; at the end of training: header [iteration, 1].
  eval leader → eval group: the header, then the weights (broadcast).
  eval leader → trainer 0: exactly one message, [iteration] when the target is reached,
      or [-1] after the final header if it never was.
  trainers: every step, an all-reduce (MAX) of "stop seen" over the training group, so
      all of them stop at the same iteration.
Sends are non-blocking: training only waits if the previous weights are still in flight
when the next evaluation point comes.

Point to point, only the weights use the default group (NCCL on GPUs); the headers and
the stop signal are host tensors on the topology's two-rank gloo control group. Under NCCL
the trainer's early receive of the stop signal would hold the pair's stream until the
target, and the weights queued behind it would never be sent. The vote stays a device
all-reduce over the training group: gloo over thousands of training ranks would cost
more every step, and the step already reads its losses on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from scalefold.train.topology import Topology

STOP_KEY = "scalefold/async_eval/stop"


def _default_store():
    """The default process group's key-value store (None where torch hides it)."""
    get = getattr(dist.distributed_c10d, "_get_default_store", None)
    try:
        return get() if get is not None else None
    except RuntimeError:
        return None


class WeightSender:
    """Lives on every training rank; only rank 0 talks to the evaluation leader."""

    def __init__(self, topo: Topology, device: torch.device) -> None:
        self.topo = topo
        self.device = device
        self.pending: list = []
        self.buffers: list[torch.Tensor] = []
        self.stop_buf = torch.full((1,), -2, dtype=torch.long)
        self.stop_req = None
        if topo.rank == 0:
            self.stop_req = dist.irecv(self.stop_buf, src=topo.eval_leader,
                                       group=topo.control_group)

    def _wait_pending(self) -> None:
        for req in self.pending:
            req.wait()
        self.pending, self.buffers = [], []

    def send(self, iteration: int, shadow: list[torch.Tensor]) -> None:
        if self.topo.rank != 0:
            return
        self._wait_pending()
        header = torch.tensor([iteration, 0], dtype=torch.long)
        flat = torch.cat([s.detach().reshape(-1) for s in shadow])  # [num_values] fp32
        self.buffers = [header, flat]
        self.pending = [dist.isend(header, dst=self.topo.eval_leader,
                                   group=self.topo.control_group),
                        dist.isend(flat, dst=self.topo.eval_leader)]

    def should_stop(self) -> bool:
        """Collective over the training ranks: has the evaluation leader said stop?

        Rank 0 polls the key the leader sets in the process group's store: a gloo receive
        never reports `is_completed()` before `wait()`, even once its value has arrived."""
        seen = 0
        if self.topo.rank == 0:
            store = _default_store()
            if store is not None:
                seen = int(store.check([STOP_KEY]) and int(store.get(STOP_KEY)) >= 0)
            elif self.stop_req is not None and self.stop_req.is_completed():
                seen = int(self.stop_buf.item() >= 0)
        flag = torch.tensor([seen], dtype=torch.long, device=self.device)
        if self.topo.num_train_ranks > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.topo.train_group)
        return bool(flag.item())

    def finish(self, iteration: int) -> None:
        if self.topo.rank != 0:
            return
        self._wait_pending()
        header = torch.tensor([iteration, 1], dtype=torch.long)
        dist.send(header, dst=self.topo.eval_leader, group=self.topo.control_group)
        if self.stop_req is not None:
            self.stop_req.wait()


@dataclass
class EvalServer:
    """The evaluation ranks' loop: receive weights, score, report, signal the target."""

    topo: Topology
    device: torch.device
    num_values: int
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    reached_target: bool = False

    def receive(self) -> tuple[int, bool, torch.Tensor | None]:
        header = torch.zeros(2, dtype=torch.long)
        leader = self.topo.rank == self.topo.eval_leader
        if leader:
            dist.recv(header, src=0, group=self.topo.control_group)
        if self.topo.num_eval_ranks > 1:
            shared = header.to(self.device)
            dist.broadcast(shared, src=self.topo.eval_leader, group=self.topo.eval_group)
            header = shared.cpu()
        iteration, final = int(header[0]), bool(header[1])
        if final:
            return iteration, True, None
        flat = torch.empty(self.num_values, dtype=torch.float32, device=self.device)
        if leader:
            dist.recv(flat, src=0)
        if self.topo.num_eval_ranks > 1:
            dist.broadcast(flat, src=self.topo.eval_leader, group=self.topo.eval_group)
        return iteration, False, flat

    def signal(self, value: int) -> None:
        if self.topo.rank == self.topo.eval_leader:
            store = _default_store()
            if store is not None:
                store.set(STOP_KEY, str(value))  # what rank 0 polls every step
            dist.send(torch.tensor([value], dtype=torch.long), dst=0,
                      group=self.topo.control_group)
