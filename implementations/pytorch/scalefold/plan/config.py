"""What a plan is asked about: the cluster and the run's shape."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

CLUSTER_SCHEMA = "scalefold-plan-cluster/1"
LOADERS = ("InitialTrainingDataloaderPT", "InitialTrainingDataloaderPQ")


@dataclass(frozen=True)
class Cluster:
    """Nodes of one kind and their links. Bandwidths are per GPU and direction."""

    name: str
    gpu: str  # profile key of the GPU kind: "h100", "h200"
    nodes: int
    gpus_per_node: int
    gpu_memory_gib: float
    intra_bw_gb_s: float  # NVLink
    inter_bw_gb_s: float  # the GPU's share of the node's network
    intra_latency_us: float = 10.0
    inter_latency_us: float = 20.0
    nccl_efficiency: float = 0.8
    memory_reserve_gib: float = 3.0
    sources: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("nodes", "gpus_per_node"):
            if getattr(self, name) < 1:
                raise ValueError(f"cluster {self.name!r}: {name} must be >= 1")
        for name in ("gpu_memory_gib", "intra_bw_gb_s", "inter_bw_gb_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"cluster {self.name!r}: {name} must be > 0")
        if not 0 < self.nccl_efficiency <= 1:
            raise ValueError(f"cluster {self.name!r}: nccl_efficiency must be in (0, 1]")

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def with_nodes(self, nodes: int) -> Cluster:
        return replace(self, nodes=nodes)


def builtin_clusters() -> dict[str, Path]:
    """The node kinds shipped with the package (`scalefold/plan/clusters/*.json`)."""
    root = resources.files("scalefold.plan") / "clusters"
    return {p.name.removesuffix(".json"): Path(str(p)) for p in root.iterdir()
            if p.name.endswith(".json")}


def load_cluster(spec: str | Path, nodes: int | None = None) -> Cluster:
    """A cluster from a node-kind name (`dgxh100`, `dgxh200`), a cluster JSON
    (schema `scalefold-plan-cluster/1`), or an MLPerf system description
    (`systems/*.json`: nodes and GPUs from it, links from the node kind its accelerator
    names). `nodes` overrides the node count."""
    known = builtin_clusters()
    path = known.get(str(spec), Path(spec))
    if not path.is_file():
        raise FileNotFoundError(f"cluster {spec!r}: neither a file nor one of "
                                f"{', '.join(sorted(known))}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"cluster file {path}: not JSON ({e})") from None
    if raw.get("schema") != CLUSTER_SCHEMA:
        if "accelerator_model_name" in raw:
            return _from_system_description(raw, path, known, nodes)
        raise ValueError(f"cluster file {path}: schema {raw.get('schema')!r}, expected "
                         f"{CLUSTER_SCHEMA!r} or an MLPerf system description")
    try:
        cluster = Cluster(
            name=raw["name"], gpu=raw["gpu"], nodes=int(raw.get("nodes", 1)),
            gpus_per_node=int(raw["gpus_per_node"]),
            gpu_memory_gib=float(raw["gpu_memory_gib"]),
            intra_bw_gb_s=float(raw["intra_node"]["bandwidth_gb_s"]),
            inter_bw_gb_s=float(raw["inter_node"]["bandwidth_gb_s"]),
            intra_latency_us=float(raw["intra_node"].get("latency_us", 10.0)),
            inter_latency_us=float(raw["inter_node"].get("latency_us", 20.0)),
            nccl_efficiency=float(raw.get("nccl_efficiency", 0.8)),
            memory_reserve_gib=float(raw.get("memory_reserve_gib", 3.0)),
            sources=raw.get("sources", {}),
        )
    except KeyError as e:
        raise ValueError(f"cluster file {path}: missing field {e}") from None
    return cluster.with_nodes(nodes) if nodes is not None else cluster


def _from_system_description(raw: dict, path: Path, known: dict[str, Path],
                             nodes: int | None) -> Cluster:
    model = raw["accelerator_model_name"]
    kind = next((k for k in ("h200", "h100") if k in model.lower()), None)
    if kind is None or f"dgx{kind}" not in known:
        raise ValueError(f"system {path}: no node kind known for accelerator {model!r}; "
                         f"pass a cluster JSON ({CLUSTER_SCHEMA})")
    base = load_cluster(known[f"dgx{kind}"])
    n = nodes if nodes is not None else int(raw["number_of_nodes"])
    per_node = int(raw["accelerators_per_node"])
    return replace(base, name=f"{raw.get('system_name', path.stem)}", nodes=n,
                   gpus_per_node=per_node)


@dataclass(frozen=True)
class RunShape:
    """How a run uses the cluster. `eval_ranks` = 0: synchronous evaluation."""

    global_batch: int = 256
    dap_size: int = 1
    eval_ranks: int = 0
    loader: str = "InitialTrainingDataloaderPQ"
    workers_per_gpu: int = 8
    preset: str | None = None  # speed preset; None: the fastest that fits the GPU
    samples_to_target: float | None = None

    def __post_init__(self) -> None:
        if self.global_batch < 1:
            raise ValueError(f"global batch must be >= 1, got {self.global_batch}")
        if self.dap_size not in (1, 2, 4, 8):
            raise ValueError(f"DAP size must be 1, 2, 4 or 8, got {self.dap_size}")
        if self.eval_ranks < 0:
            raise ValueError(f"evaluation ranks must be >= 0, got {self.eval_ranks}")
        if self.loader not in LOADERS:
            raise ValueError(f"loader must be one of {LOADERS}, got {self.loader!r}")
        if self.workers_per_gpu < 1:
            raise ValueError(f"workers per GPU must be >= 1, got {self.workers_per_gpu}")

    def layout(self, cluster: Cluster) -> tuple[int, int, int]:
        """(data-parallel groups, local batch, idle GPUs) on `cluster`: every training
        rank holds `local batch` samples (run one after another), the DAP group one
        sample at a time."""
        if self.dap_size > cluster.gpus_per_node:
            raise ValueError(f"DAP size {self.dap_size} exceeds the {cluster.gpus_per_node} "
                             f"GPUs of a node (a DAP group must stay on NVLink)")
        train_gpus = cluster.gpus - self.eval_ranks
        if train_gpus < self.dap_size:
            raise ValueError(f"{cluster.gpus} GPUs leave {train_gpus} for training after "
                             f"{self.eval_ranks} evaluation ranks: fewer than one DAP group")
        groups = min(train_gpus // self.dap_size, self.global_batch)
        # The largest number of groups that divides the global batch.
        while self.global_batch % groups:
            groups -= 1
        local = self.global_batch // groups
        idle = train_gpus - groups * self.dap_size
        return groups, local, idle
