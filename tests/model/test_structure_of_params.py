"""The mlperf preset is the MLPerf reference model: same tensors, same shapes, same count."""

from __future__ import annotations

from pathlib import Path

import torch

from scalefold.model import AlphaFold, AlphaFoldConfig

TSV = Path(__file__).resolve().parents[2] / "implementations/pytorch/scalefold/checkpoint/mlperf_reference_state_dict.tsv"


def _reference_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in TSV.read_text().splitlines():
        if not line or line.startswith("#") or line.startswith("name\t"):
            continue
        name, shape = line.split("\t")
        shapes[name] = tuple(int(d) for d in shape.split("x"))
    return shapes


def test_mlperf_parameter_count_is_exact():
    with torch.device("meta"):
        model = AlphaFold(AlphaFoldConfig.mlperf())
    assert sum(p.numel() for p in model.parameters()) == 93_229_082


def test_mlperf_state_dict_matches_reference_names_and_shapes():
    with torch.device("meta"):
        model = AlphaFold(AlphaFoldConfig.mlperf())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = _reference_shapes()
    assert len(ref) == 5044
    missing = sorted(set(ref) - set(ours))
    unexpected = sorted(set(ours) - set(ref))
    assert not missing and not unexpected, (missing[:10], unexpected[:10])
    wrong = {k: (ours[k], ref[k]) for k in ref if ours[k] != ref[k]}
    assert not wrong, wrong
    # Same order as the reference too, so a saved checkpoint reads like the original.
    assert list(ours) == list(ref)


def test_tm_head_is_off_by_default_and_available():
    cfg = AlphaFoldConfig.tiny()
    assert "auxiliary_heads.tm.linear.weight" not in AlphaFold(cfg).state_dict()
    import dataclasses

    cfg_tm = dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, tm_enabled=True))
    assert "auxiliary_heads.tm.linear.weight" in AlphaFold(cfg_tm).state_dict()
