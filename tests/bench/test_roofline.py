"""The GEMM table: shapes read from profiler events, FLOPs and bytes, floors, grouping."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from scalefold.bench.roofline import Card, Gemm, format_gemm_rows, gemm_of, gemm_rows

H100 = Card("H100", 989.0, 3.35, 67.0)


def test_gemm_of_reads_each_operator_s_shapes():
    assert gemm_of("aten::mm", [[64, 32], [32, 16]]) == Gemm(1, 64, 16, 32)
    # addmm with a broadcast bias reads no [m, n] input; with a full matrix it does
    assert gemm_of("aten::addmm", [[16], [64, 32], [32, 16], [], []]) == Gemm(1, 64, 16, 32)
    assert gemm_of("aten::addmm", [[64, 16], [64, 32], [32, 16], [], []]) == Gemm(
        1, 64, 16, 32, accumulates=True)
    assert gemm_of("aten::_addmm_activation", [[16], [8, 4], [4, 16], [], [], []]) == Gemm(
        1, 8, 16, 4)
    assert gemm_of("aten::bmm", [[3, 64, 32], [3, 32, 8]]) == Gemm(3, 64, 8, 32)
    assert gemm_of("aten::baddbmm", [[3, 64, 8], [3, 64, 32], [3, 32, 8], [], []]) == Gemm(
        3, 64, 8, 32, accumulates=True)
    assert gemm_of("aten::baddbmm", [[1, 1, 8], [3, 64, 32], [3, 32, 8], [], []]) == Gemm(
        3, 64, 8, 32)
    assert gemm_of("aten::add", [[4], [4]]) is None
    assert gemm_of("aten::mm", []) is None  # shapes not recorded


def test_flops_bytes_and_floor():
    g = Gemm(2, 100, 30, 40)
    assert g.flops == 2 * 2 * 100 * 30 * 40
    assert g.bytes(2) == 2 * 2 * (100 * 40 + 40 * 30 + 100 * 30)
    assert Gemm(2, 100, 30, 40, accumulates=True).bytes(2) == g.bytes(2) + 2 * 2 * 100 * 30
    # a memory-bound pair projection at 224 residues (K = c_z = 128, 512 wide, bf16):
    # 64.2 MB at 3.35 TB/s, where its arithmetic would take 6.6 us
    from scalefold.bench.roofline import GemmRow
    row = GemmRow("aten::addmm", Gemm(1, 224 * 224, 512, 128), "c10::BFloat16", 2)
    assert row.floor_us(H100) == pytest.approx(row.gemm.bytes(2) / 3.35e6)
    assert row.gemm.flops / 989e6 < row.floor_us(H100)
    # a compute-bound one: its arithmetic
    big = GemmRow("aten::mm", Gemm(1, 8192, 8192, 8192), "c10::BFloat16", 2)
    assert big.floor_us(H100) == pytest.approx(big.gemm.flops / 989e6)
    # float32 operands at the card's float32 rate
    f32 = GemmRow("aten::mm", Gemm(1, 8192, 8192, 8192), "float", 4)
    assert f32.floor_us(H100) == pytest.approx(f32.gemm.flops / 67e6)


def test_profile_rows_group_by_shape_and_skip_nested_products():
    lin = torch.nn.Linear(32, 16)
    x = torch.randn(8, 64, 32)
    w = torch.randn(32, 16)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(3):
            lin(x)  # addmm on the flattened rows
        torch.matmul(x, x.transpose(1, 2))  # matmul -> bmm: counted once, as bmm
        torch.mm(x[0], w)
    rows = {(r.op, r.gemm): r for r in gemm_rows(prof, on_device=False)}
    assert rows[("aten::addmm", Gemm(1, 512, 16, 32))].count == 3
    assert rows[("aten::bmm", Gemm(8, 64, 64, 32))].count == 1
    assert rows[("aten::mm", Gemm(1, 64, 16, 32))].count == 1
    assert len(rows) == 3
    assert all(r.us > 0 and r.dtype == "float" and r.itemsize == 4 for r in rows.values())
    text = format_gemm_rows(list(rows.values()), H100)
    assert "1x512x16x32" in text and "8x64x64x32" in text and "of floor" in text
    assert "GEMMs: 3 shapes, 5 calls" in text
    assert "of floor" not in format_gemm_rows(list(rows.values()), None)
