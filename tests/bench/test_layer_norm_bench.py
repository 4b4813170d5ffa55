"""`scalefold bench layernorm` on the CPU: the recorded shapes and the table."""

from __future__ import annotations

import torch

from scalefold.bench.layer_norm import (
    BWD_CANDIDATES,
    FWD_CANDIDATES,
    LNShape,
    format_table,
    record_shapes,
    time_shape,
)
from scalefold.kernels.layer_norm import DEFAULT_LAUNCH, LayerNormLaunch
from scalefold.model import AlphaFoldConfig
from scalefold.model.primitives import LayerNorm


def test_records_every_layer_norm_call_of_a_forward():
    seen = record_shapes("tiny", torch.device("cpu"))
    cfg = AlphaFoldConfig.tiny()
    from scalefold.model import AlphaFold

    modules = sum(isinstance(m, LayerNorm) for m in AlphaFold(cfg).modules())
    # Every LayerNorm runs at least once (the structure module's several times).
    assert sum(seen.values()) >= modules
    widths = {s.c for s in seen}
    assert {cfg.evoformer.c_m, cfg.evoformer.c_z} <= widths
    # bf16 residual streams: the Evoformer's LayerNorms return bf16.
    assert any(s.out_dtype == "bfloat16" for s in seen)


def test_sweep_times_every_candidate_and_tabulates():
    shape = LNShape(rows=64, c=32, dtype="bfloat16", out_dtype="bfloat16")
    res = time_shape(shape, calls=3, device=torch.device("cpu"), warmup=0, reps=1, sweep=True)
    assert set(res.fwd_s) == {lc.name for lc in (DEFAULT_LAUNCH, *FWD_CANDIDATES)}
    assert set(res.bwd_s) == {lc.name for lc in (DEFAULT_LAUNCH, *BWD_CANDIDATES)}
    assert all(s > 0 for s in (*res.fwd_s.values(), *res.bwd_s.values()))
    table = format_table([res], 4800.0)
    assert shape.label in table and DEFAULT_LAUNCH.name in table


def test_launch_rows_per_program():
    assert LayerNormLaunch(block_elems=4096).block_m(128) == 32
    assert LayerNormLaunch(block_elems=4096).block_m(384) == 8  # next power of two: 512
    assert LayerNormLaunch(block_elems=16384).block_m(16) == 64  # capped
