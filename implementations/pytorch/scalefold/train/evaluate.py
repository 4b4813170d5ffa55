"""The evaluation of one chain: the SWA weights' forward at full length, and its lDDT-Cα.

`Evaluator` owns the evaluation model's inference path; the trainer (synchronous
evaluation and the asynchronous evaluation ranks) and `scalefold bench eval` all score
through it, so what the bench times is what a run evaluates.

The inference path:
- no autograd at all (`torch.inference_mode`): nothing is saved for a backward;
- the training run's precision context (bf16 autocast with float32 islands, or tf32/fp32);
- only the model's input features and the two ground-truth tensors the metric reads go to
  the device (the loader's batches also carry the loss's ground truth);
- optionally, each chain padded to a length bucket (`EvalOptions.bucket`): the padded
  residues are masked out everywhere (sequence, MSA, extra-MSA and template masks are
  zero there), so they change neither the real residues' predictions nor the score, and
  chains of nearby lengths share one shape;
- optionally, the forward captured as one CUDA graph per padded shape (`cuda_graphs`),
  captured the first time that shape is met and replayed afterwards. The graphs share one
  memory pool and keep only their output positions alive, so the memory they hold is
  about one forward's at the longest length, not one per shape;
- optionally, several chains in flight at once (`lanes`): chain k runs on lane k mod
  lanes, each lane a host thread of its own and, on a GPU, a stream with its own graphs,
  pool and capture stream (a graph cannot run beside itself, nor two graphs of one pool
  beside each other). A short chain's forward is ~28,000 small kernels; a second chain's
  kernels can fill their launch gaps and tails (measured: two lanes 3.3% faster on a
  45-chain screen on an H200, docs/evidence/2026-12-06_h200).
  The host thread is what makes that possible: launching a graph of that many kernels
  returns only when the GPU's queue has room for its last ones, about when the chain has
  run (`bench eval`'s host parts), so one thread could not queue the next chain on
  another stream before this one had finished. A shape a lane has not captured is
  captured on the caller's thread with no other chain in flight (a capture must be the
  only CUDA work of the process). The numbers do not depend on the lane: every lane's
  graphs are captured from the same model.

`warm_up` does each shape's first-time work (Triton compilation and autotuning, graph
capture) ahead of the first evaluation: during initialisation, outside the timed run. The
trainer warms up on synthetic chains, one per length bucket up to the validation set's
maximum length (`warm_up_lengths`, `synthetic_chains`): every shape an evaluation can
meet, without reading validation data before `run_start`. Evaluation features are padded
to fixed MSA, extra-MSA and template counts, so the padded length is the only shape that
varies between chains.

Scores stay on the device until the whole shard is scored: the host queues the next
chain while the device still runs the previous one. `queue_score` leaves a score on its
lane; `join` waits for the lanes' threads to have queued their chains and makes the
caller's stream wait for every lane before it reads the scores.

The weights are updated in place (`load_weights`, `load_flat`): a captured graph reads
the parameters' memory, so it must never be replaced.
"""

from __future__ import annotations

import contextlib
import math
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from scalefold.kernels.templates import TemplatePairsOncePerForward, template_features_repeat
from scalefold.metrics import lddt_ca
from scalefold.train.config import (
    GROUP_MAX_LENGTH,
    EvalBuckets,
    EvalChainsPerForward,
    EvalConcurrentChains,
)
from scalefold.utils.transfer import InputCopies

if TYPE_CHECKING:
    from scalefold.train.build import BuiltStep
    from scalefold.train.config import SpeedConfig

Batch = dict[str, torch.Tensor]

# The residue axis N of each model input, in the batch layout [B, ..., R]: 1 for
# per-residue features ([B, N, ..., R]), 2 for per-row ones ([B, S|E|T, N, ..., R]),
# None for those without one.
RESIDUE_AXIS: dict[str, int | None] = {
    "aatype": 1, "target_feat": 1, "residue_index": 1, "seq_mask": 1,
    "atom14_atom_exists": 1, "residx_atom14_to_atom37": 1, "residx_atom37_to_atom14": 1,
    "atom37_atom_exists": 1,
    "msa_feat": 2, "msa_mask": 2, "extra_msa": 2, "extra_has_deletion": 2,
    "extra_deletion_value": 2, "extra_msa_mask": 2,
    "template_aatype": 2, "template_all_atom_positions": 2, "template_all_atom_mask": 2,
    "template_pseudo_beta": 2, "template_pseudo_beta_mask": 2,
    "template_torsion_angles_sin_cos": 2, "template_alt_torsion_angles_sin_cos": 2,
    "template_torsion_angles_mask": 2,
    "template_mask": None,
}  # fmt: skip
# The ground truth the metric reads (last recycling slice): [B, N, 37, 3] and [B, N, 37].
TRUTH_FEATURES = ("all_atom_positions", "all_atom_mask")

BUCKET_CHOICES = typing.get_args(EvalBuckets)
LANE_CHOICES = typing.get_args(EvalConcurrentChains)
GROUP_CHOICES = typing.get_args(EvalChainsPerForward)


def bucket_length(length: int, bucket: int) -> int:
    """`length` rounded up to a multiple of `bucket` (0: unchanged)."""
    if length < 1:
        raise ValueError(f"chain length must be positive, got {length}")
    if bucket < 0:
        raise ValueError(f"bucket must be >= 0 (0: exact lengths), got {bucket}")
    return length if bucket == 0 else bucket * math.ceil(length / bucket)


def warm_up_lengths(max_length: int, bucket: int) -> list[int]:
    """Every padded length a chain of at most `max_length` residues can take: the
    multiples of `bucket` up to `bucket_length(max_length)`. Buckets are required: without
    them every length up to the maximum would be its own shape."""
    if bucket <= 0:
        raise ValueError("warming up every evaluation shape needs length buckets "
                         "(eval_length_buckets)")
    return list(range(bucket, bucket_length(max_length, bucket) + 1, bucket))


def synthetic_chains(lengths: list[int], n_clust: int, n_extra: int, n_templ: int,
                     num_iterations: int, seed: int = 0) -> list[Batch]:
    """One host-memory chain [1, ..., R] per length, with the model inputs and the truth
    the evaluation reads, in the validation loader's layout and dtypes: prefixes of one
    synthetic chain at the longest length."""
    from scalefold.utils.synthetic import synthetic_batch

    full = synthetic_batch(None, max(lengths), n_clust, n_extra, n_templ,
                           num_iterations=num_iterations, seed=seed)
    axes = dict(RESIDUE_AXIS) | {k: 1 for k in TRUTH_FEATURES}
    chains = []
    for n in lengths:
        chains.append({name: full[name] if axis is None
                       else full[name].narrow(axis, 0, n).contiguous()
                       for name, axis in axes.items()})
    return chains


class NonFiniteEvaluation(FloatingPointError):
    """The evaluation forward predicted non-finite positions for some chains."""


def finite_scores(values: list[float], names: list[str]) -> list[float]:
    """`values` (lDDT-Cα per chain, NaN where `Evaluator` found the chain's predicted
    positions not finite), or `NonFiniteEvaluation` naming those chains: a NaN forward
    must stop the run, not enter the mean as a low score."""
    bad = [f"{n} ({v})" for v, n in zip(values, names, strict=True) if not math.isfinite(v)]
    if bad:
        raise NonFiniteEvaluation(
            f"evaluation: the predicted positions of {len(bad)} of {len(values)} chains are "
            f"not finite (NaN or inf), so their lDDT-Ca is undefined: {', '.join(bad[:10])}"
            f"{' ...' if len(bad) > 10 else ''}. The forward (its precision or a kernel) "
            "breaks on them; rerun with --precision fp32 or --speed eager to tell which")
    return values


def chain_length(feats: Batch) -> int:
    """N of a batch (its `aatype`: [B, N, R])."""
    if "aatype" not in feats:
        raise KeyError("features have no 'aatype' to take the chain length from")
    return int(feats["aatype"].shape[1])


def model_inputs(feats: Batch) -> Batch:
    """The model's input features of `feats` (names of `RESIDUE_AXIS`)."""
    missing = [k for k in RESIDUE_AXIS if k not in feats]
    if missing:
        raise KeyError(f"evaluation features lack model inputs {missing}")
    return {k: feats[k] for k in RESIDUE_AXIS}


def pad_inputs(feats: Batch, length: int) -> Batch:
    """Model inputs zero-padded along their residue axis to `length` residues.

    Zeros are the masked value of every mask (sequence, MSA, extra MSA, template
    positions and torsions), so padded residues take part in nothing that reaches a real
    residue. `feats` must hold only model inputs (`model_inputs`).
    """
    n = chain_length(feats)
    if length < n:
        raise ValueError(f"cannot pad a chain of {n} residues to {length}")
    if length == n:
        return feats
    out = {}
    for name, value in feats.items():
        if name not in RESIDUE_AXIS:
            raise KeyError(f"no residue axis known for feature {name!r}")
        axis = RESIDUE_AXIS[name]
        if axis is None:
            out[name] = value
            continue
        if value.shape[axis] != n:
            raise ValueError(f"feature {name!r} {tuple(value.shape)} has {value.shape[axis]} "
                             f"residues on axis {axis}, the chain {n}")
        # F.pad lists (before, after) pairs from the last axis backwards.
        pad = [0, 0] * (value.dim() - 1 - axis) + [0, length - n]
        out[name] = F.pad(value, pad)
    return out


def stack_chains(chains: list[Batch], length: int) -> Batch:
    """Chains (batches of one) as one batch: their model inputs and ground truth padded to
    `length` residues and concatenated along the batch axis. The truth's padding is
    masked, so lDDT-Cα scores each chain as at its own length."""
    out: dict[str, list[torch.Tensor]] = {}
    for feats in chains:
        n = chain_length(feats)
        for name, value in pad_inputs(model_inputs(feats), length).items():
            out.setdefault(name, []).append(value)
        for name in TRUTH_FEATURES:  # [B, N, ..., R]: residues on axis 1
            value = feats[name]
            pad = [0, 0] * (value.dim() - 2) + [0, length - n]
            out.setdefault(name, []).append(F.pad(value, pad))
    return {name: torch.cat(values) for name, values in out.items()}


@dataclass(frozen=True)
class EvalOptions:
    """How the evaluation forward runs (SpeedConfig's eval_* fields)."""

    bucket: int = 0  # pad lengths up to a multiple of this; 0: exact lengths
    cuda_graphs: bool = False  # one CUDA graph per padded shape
    # Each chain's inputs copied on a stream of their own while the previous chain
    # computes (`InputCopies`): the evaluation does not read scores back between chains,
    # so the host is ahead and the copies need not wait between two forwards.
    copy_stream: bool = False
    lanes: int = 1  # chains in flight at once, each on a host thread (and stream) of its own
    group: int = 1  # chains of one bucket up to GROUP_MAX_LENGTH stacked into one batch

    def __post_init__(self) -> None:
        if self.bucket < 0:
            raise ValueError(f"EvalOptions.bucket must be >= 0, got {self.bucket}")
        if self.lanes < 1:
            raise ValueError(f"EvalOptions.lanes must be >= 1, got {self.lanes}")
        if self.group < 1:
            raise ValueError(f"EvalOptions.group must be >= 1, got {self.group}")
        if self.group > 1 and self.bucket == 0:
            raise ValueError("EvalOptions.group > 1 needs length buckets (bucket > 0)")

    def grouped(self, length: int) -> bool:
        """Whether a chain of `length` residues is stacked with others of its bucket."""
        return self.group > 1 and bucket_length(length, self.bucket) <= GROUP_MAX_LENGTH

    @classmethod
    def from_speed(cls, speed: SpeedConfig) -> EvalOptions:
        """From a `SpeedConfig` (its `eval_length_buckets`, `eval_cuda_graphs`,
        `eval_concurrent_chains` and `input_copy_stream`)."""
        buckets = speed.eval_length_buckets
        if buckets not in BUCKET_CHOICES:
            raise ValueError(f"eval_length_buckets must be one of {BUCKET_CHOICES}, "
                             f"got {buckets!r}")
        if speed.eval_concurrent_chains not in LANE_CHOICES:
            raise ValueError(f"eval_concurrent_chains must be one of {LANE_CHOICES}, "
                             f"got {speed.eval_concurrent_chains!r}")
        if speed.eval_chains_per_forward not in GROUP_CHOICES:
            raise ValueError(f"eval_chains_per_forward must be one of {GROUP_CHOICES}, "
                             f"got {speed.eval_chains_per_forward!r}")
        return cls(bucket=0 if buckets == "off" else int(buckets),
                   cuda_graphs=speed.eval_cuda_graphs, copy_stream=speed.input_copy_stream,
                   lanes=int(speed.eval_concurrent_chains),
                   group=int(speed.eval_chains_per_forward))


def padded_signature(inputs: Batch, length: int) -> tuple:
    """What a captured graph is keyed by: each model input's name, shape and dtype once
    `pad_inputs(inputs, length)` has padded it (read from `inputs`, wherever they are)."""
    sig = []
    for k, v in inputs.items():
        shape = list(v.shape)
        axis = RESIDUE_AXIS.get(k)
        if axis is not None:
            shape[axis] = length
        sig.append((k, tuple(shape), v.dtype))
    return tuple(sig)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: Batch  # the graph reads these buffers: copy each chain's inputs in
    positions: torch.Tensor  # [B, L, 37, 3] float32, overwritten by every replay


@dataclass
class _Lane:
    """Where chains run: a stream (None: the caller's), a host thread (None: the
    caller's), and the graphs captured for it, one per padded shape, in a memory pool of
    their own."""

    stream: torch.cuda.Stream | None
    pool: tuple | None
    # The stream this lane's graphs are captured on (cuda_graphs). cuBLAS keys its
    # workspace by stream and a captured GEMM keeps that workspace's address, so graphs
    # captured on one stream and replayed at once on two would share it: each lane
    # captures on its own.
    capture: torch.cuda.Stream | None = None
    # lanes > 1: the host thread that queues this lane's chains, and the chains it has
    # been handed that `join` has not yet waited for
    thread: ThreadPoolExecutor | None = None
    pending: list[Future] = field(default_factory=list)
    graphs: dict[tuple, _Captured] = field(default_factory=dict)


class Evaluator:
    """Scores chains with `model` (the evaluation copy holding the SWA weights).

    `autocast` returns the run's precision context (`BuiltStep.autocast`).
    """

    def __init__(self, model: nn.Module, device: torch.device,
                 options: EvalOptions | None = None,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                 ) -> None:
        self.model = model
        self.device = torch.device(device)
        self.options = options or EvalOptions()
        if self.options.cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"eval_cuda_graphs needs a CUDA device; evaluation runs on "
                             f"{self.device}")
        self.autocast = autocast or contextlib.nullcontext
        lanes = self.options.lanes
        graphs = self.options.cuda_graphs
        cuda = self.device.type == "cuda"
        self._lanes = [
            _Lane(torch.cuda.Stream(self.device) if lanes > 1 and cuda else None,
                  torch.cuda.graph_pool_handle() if graphs else None,
                  torch.cuda.Stream(self.device) if graphs else None,
                  ThreadPoolExecutor(1, thread_name_prefix=f"eval-lane{i}")
                  if lanes > 1 else None)
            for i in range(lanes)]
        self._turn = 0  # the lane of the next chain
        self._copies = InputCopies(self.device, self.options.copy_stream)

    @classmethod
    def from_built(cls, built: BuiltStep, device: torch.device,
                   speed: SpeedConfig | None = None) -> Evaluator:
        """The evaluator of a `BuiltStep`'s evaluation copy, with the rank's evaluation
        levers (`built.eval_speed`; `speed` instead where given) and the run's precision:
        what the trainer evaluates with."""
        if built.eval_model is None:
            raise ValueError("the step was built without an evaluation copy "
                             "(build_step(..., eval_copy=False))")
        options = EvalOptions.from_speed(speed if speed is not None else built.eval_speed)
        return cls(built.eval_model, device, options, built.autocast)

    @property
    def num_graphs(self) -> int:
        return sum(len(lane.graphs) for lane in self._lanes)

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def load_weights(self, tensors: Iterable[torch.Tensor]) -> None:
        """Copy `tensors` (the SWA shadow, in `parameters()` order) into the model, in
        place."""
        for p, s in zip(self.model.parameters(), tensors, strict=True):
            p.copy_(s.to(p.dtype))

    @torch.no_grad()
    def load_flat(self, flat: torch.Tensor) -> None:
        """Copy one flat vector of all parameters (`parameters()` order) in place: unlike
        `vector_to_parameters`, the parameters keep their memory."""
        params = list(self.model.parameters())
        total = sum(p.numel() for p in params)
        if flat.numel() != total:
            raise ValueError(f"flat weights hold {flat.numel()} values, the model {total}")
        chunks = flat.split([p.numel() for p in params])
        self.load_weights(c.view_as(p) for c, p in zip(chunks, params, strict=True))

    # ---------------------------------------------------------------- inference
    def _forward(self, inputs: Batch) -> torch.Tensor:
        with self.autocast():
            out = self.model(inputs)
        return out["final_atom_positions"].float()  # [B, L, 37, 3]

    def _replay(self, inputs: Batch, lane: _Lane) -> torch.Tensor:
        sig = padded_signature(inputs, chain_length(inputs))  # inputs: already padded
        entry = lane.graphs.get(sig)
        if entry is None:
            entry = self._capture(inputs, lane)
            lane.graphs[sig] = entry
        for k, v in inputs.items():
            entry.inputs[k].copy_(v)
        entry.graph.replay()
        return entry.positions

    def _capture(self, inputs: Batch, lane: _Lane) -> _Captured:
        static = {k: v.clone() for k, v in inputs.items()}
        current = torch.cuda.current_stream(self.device)
        # Warm-up outside the capture (Triton compilation and autotuning, cuBLAS
        # workspaces), on the stream the capture then uses, as PyTorch requires.
        lane.capture.wait_stream(current)
        with torch.cuda.stream(lane.capture):
            self._forward(static)
        current.wait_stream(lane.capture)
        torch.cuda.synchronize(self.device)
        # Give the warm-up's cached blocks back to the device: the graph's pool is about
        # to hold as much again.
        torch.cuda.empty_cache()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=lane.pool, stream=lane.capture):
            positions = self._forward(static)
        return _Captured(graph, static, positions)

    # -------------------------------------------------------------------- lanes
    def _take_lane(self) -> _Lane:
        lane = self._lanes[self._turn]
        self._turn = (self._turn + 1) % len(self._lanes)
        return lane

    @contextlib.contextmanager
    def _on(self, lane: _Lane):
        """Queue on `lane`'s stream, after whatever the caller's stream holds (the
        weights' copy above all)."""
        if lane.stream is None:
            yield
            return
        lane.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(lane.stream):
            yield

    def _handed_back(self, t: torch.Tensor) -> torch.Tensor:
        """`t`, made on a lane, marked as used by the caller's stream: the allocator must
        not give its memory to the lane's next chain before the caller has read it."""
        if self._lanes[0].stream is not None:
            t.record_stream(torch.cuda.current_stream(self.device))
        return t

    def _captured(self, feats: Batch, lane: _Lane) -> bool:
        """Whether `lane` can run `feats` without first-time work of its own (a capture)."""
        if not self.options.cuda_graphs:
            return True
        length = bucket_length(chain_length(feats), self.options.bucket)
        return padded_signature(model_inputs(feats), length) in lane.graphs

    def _drain(self) -> None:
        """Wait until every lane's thread has queued the chains it was handed; raise the
        first error one of them met."""
        errors = []
        for lane in self._lanes:
            errors += [e for f in lane.pending if (e := f.exception()) is not None]
            lane.pending.clear()
        if errors:
            raise errors[0]

    def join(self) -> None:
        """The caller's stream waits for every chain queued so far (`queue_score`)."""
        self._drain()
        for lane in self._lanes:
            if lane.stream is not None:
                torch.cuda.current_stream(self.device).wait_stream(lane.stream)

    # ---------------------------------------------------------------- inference
    def _predict(self, feats: Batch, lane: _Lane) -> torch.Tensor:
        n = chain_length(feats)
        host_inputs = model_inputs(feats)
        if isinstance(self.model, TemplatePairsOncePerForward) and not template_features_repeat(
                host_inputs):
            raise ValueError(
                f"a {n}-residue evaluation chain's template features differ between recycling "
                "iterations, so eval_template_pairs_once would reuse the wrong templates; "
                "turn it off for this data (the data pipeline repeats them over iterations)")
        inputs, _ = self._copies(host_inputs)
        inputs = pad_inputs(inputs, bucket_length(n, self.options.bucket))
        with torch.inference_mode():
            if self.options.cuda_graphs:
                positions = self._replay(inputs, lane)
            else:
                positions = self._forward(inputs)
            # A view of the captured output would be overwritten by the next replay.
            return positions[:, :n].clone() if self.options.cuda_graphs else positions[:, :n]

    def predict(self, feats: Batch) -> torch.Tensor:
        """Predicted atom37 positions [B, N, 37, 3] (float32) of one batch of chains of
        one length, at their own length whatever the bucket."""
        self._drain()  # a capture below must be the only work in flight
        lane = self._take_lane()
        with self._on(lane):
            positions = self._predict(feats, lane)
        self.join()
        return self._handed_back(positions)

    def warm_up(self, batches: Iterable[Batch],
                timings: list[tuple[int, float]] | None = None) -> int:
        """One forward per padded shape of `batches` on every lane (capturing its graph
        where graphs are on), so that an evaluation meets no first-time work; the weights
        are untouched. Returns the number of shapes; `timings` gets (padded length,
        host seconds until its work ran) per shape, in order (the first carries the
        compiles)."""
        self._drain()
        seen = set()
        for feats in batches:
            n = chain_length(feats)
            shape = (tuple(feats["aatype"].shape[:1]), bucket_length(n, self.options.bucket))
            if shape not in seen:
                seen.add(shape)
                t0 = time.perf_counter()
                for lane in self._lanes:
                    with self._on(lane):
                        self._predict(feats, lane)
                if timings is not None:
                    self.join()
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    timings.append((shape[1], time.perf_counter() - t0))
        self.join()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()  # the warm-ups' eager activations
        return len(seen)

    def warm_up_buckets(self, max_length: int, n_clust: int, n_extra: int, n_templ: int,
                        num_iterations: int,
                        timings: list[tuple[int, float]] | None = None) -> int:
        """`warm_up` on one synthetic chain per length bucket up to `max_length`, at the
        evaluation's MSA sizes and recycling slices: every shape an evaluation of chains
        up to that length can meet, no validation data read. Returns the shapes."""
        lengths = warm_up_lengths(max_length, self.options.bucket)
        chains = synthetic_chains(lengths, n_clust, n_extra, n_templ, num_iterations)
        # and each grouped bucket's stacked shape
        groups = [stack_chains([c] * self.options.group, n)
                  for n, c in zip(lengths, chains, strict=True) if self.options.grouped(n)]
        return self.warm_up(chains + groups, timings)

    def queue_score(self, feats: Batch,
                    events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None,
                    ) -> torch.Tensor:
        """lDDT-Cα [B] of one batch (the last recycling slice's ground truth), queued on
        the next lane without waiting for it: read it after `join`. `events` (CUDA) are
        recorded on that lane before and after the chain's work.

        With several lanes the lane's thread queues the chain and the score arrives in a
        tensor made here; a shape the lane has not captured is run here instead, once
        every lane's thread has queued what it was handed."""
        lane = self._take_lane()
        if lane.thread is None or not self._captured(feats, lane):
            self._drain()
            with self._on(lane):
                scores = self._score_here(feats, lane, events)
            return self._handed_back(scores)
        out = torch.empty(feats["aatype"].shape[0], device=self.device)  # [B]
        ready = None
        if lane.stream is not None:
            # The lane starts after what the caller's stream holds now: the weights'
            # copy, `out`'s allocation.
            ready = torch.cuda.Event()
            ready.record()
            out.record_stream(lane.stream)
        lane.pending.append(lane.thread.submit(self._score_in_lane, feats, lane, ready,
                                               events, out))
        return out

    def _score_here(self, feats: Batch, lane: _Lane,
                    events: tuple[torch.cuda.Event, torch.cuda.Event] | None,
                    ) -> torch.Tensor:
        if events is not None:
            events[0].record()
        positions = self._predict(feats, lane)
        truth, _ = self._copies({k: feats[k][..., -1] for k in TRUTH_FEATURES})
        with torch.inference_mode():
            scores = lddt_ca(positions, truth["all_atom_positions"].float(),
                             truth["all_atom_mask"].float())
            # A non-finite position fails every distance test, so lDDT would score the
            # chain 0 as if merely wrong: its score becomes NaN instead, which the reader
            # refuses (`finite_scores`), on the device and without a host read here.
            finite = torch.isfinite(positions).flatten(1).all(1)  # [B]
            scores = torch.where(finite, scores, torch.nan)
        if events is not None:
            events[1].record()
        return scores  # [B]

    def _score_in_lane(self, feats: Batch, lane: _Lane, ready: torch.cuda.Event | None,
                       events: tuple[torch.cuda.Event, torch.cuda.Event] | None,
                       out: torch.Tensor) -> None:
        """`queue_score`'s work on the lane's thread (its own current device and stream:
        both are per thread)."""
        with contextlib.ExitStack() as on:
            if lane.stream is not None:
                # the stream's device: `self.device` may name no index
                on.enter_context(torch.cuda.device(lane.stream.device))
                on.enter_context(torch.cuda.stream(lane.stream))
                lane.stream.wait_event(ready)
            out.copy_(self._score_here(feats, lane, events))

    def score(self, feats: Batch) -> torch.Tensor:
        """lDDT-Cα [B] of one batch, on the device, without waiting for it (`queue_score`
        and `join`)."""
        scores = self.queue_score(feats)
        self.join()
        return scores

    def groups(self, batches: Iterable[tuple[int, Batch]],
               ) -> Iterator[tuple[list[int], Batch]]:
        """`(index, features)` batches of one chain each as the forwards that run them:
        with `EvalOptions.group` > 1, the chains of a grouped bucket (`grouped`) stacked
        that many at a time (`stack_chains`), held until the group is full; the rest, and
        at the end each bucket's last few, alone. (indices, features) a forward."""
        held: dict[int, list[tuple[int, Batch]]] = {}
        for index, feats in batches:
            n = chain_length(feats)
            if not self.options.grouped(n):
                yield [index], feats
                continue
            length = bucket_length(n, self.options.bucket)
            group = held.setdefault(length, [])
            group.append((index, feats))
            if len(group) == self.options.group:
                del held[length]
                yield [i for i, _ in group], stack_chains([f for _, f in group], length)
        for group in held.values():
            for index, feats in group:
                yield [index], feats

    def score_chains(self, batches: Iterable[tuple[int, Batch]],
                     name: Callable[[int], str] = str) -> list[tuple[int, float]]:
        """(index, lDDT-Cα) per chain of `(index, features)` batches of one chain each
        (run as `groups` forms them), read back once at the end; raises
        `NonFiniteEvaluation` naming (`name(index)`) the chains whose predicted positions
        were not finite."""
        indices, scores = [], []
        for group, feats in self.groups(batches):
            indices += group
            scores.append(self.queue_score(feats))  # [len(group)]
        if not scores:
            return []
        self.join()
        values = torch.cat(scores).cpu().tolist()
        finite_scores(values, [name(i) for i in indices])
        return list(zip(indices, values, strict=True))
