"""The reference checkpoint layout: strict loading, clear errors, atomic bit-exact saving."""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from scalefold.checkpoint import reference as ref
from scalefold.checkpoint.reference import (
    CheckpointError,
    load_reference_checkpoint,
    optimizer_state_by_name,
    reference_state_dict_shapes,
    save_reference_checkpoint,
    sha256_file,
)

SHARED_TSV = Path(__file__).resolve().parents[3] / "shared" / "reference" / (
    "mlperf_reference_state_dict.tsv"
)


class TensorListModule(nn.Module):
    """A module whose parameters are exactly the given names and shapes."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        for name, shape in shapes.items():
            *path, leaf = name.split(".")
            module = self
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, nn.Module())
                module = getattr(module, part)
            module.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))


def _small_shapes() -> dict[str, tuple[int, ...]]:
    # Every reference name, each axis capped at 3: the names matter here, not the sizes.
    return {n: tuple(min(d, 3) for d in s) for n, s in reference_state_dict_shapes().items()}


def _random_bits(shape, generator) -> torch.Tensor:
    # Arbitrary float32 bit patterns (NaNs, infinities, subnormals included): a round trip
    # that does any arithmetic or conversion would change some of them.
    bits = torch.randint(-(2**31), 2**31 - 1, shape, generator=generator, dtype=torch.int32)
    return bits.view(torch.float32)


def _random_state(shapes, seed=0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {n: _random_bits(s, generator) for n, s in shapes.items()}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.int32), b.contiguous().view(torch.int32)
    )


@pytest.fixture(scope="module")
def small_shapes():
    return _small_shapes()


# --------------------------------------------------------------------------- the list


def test_packaged_list_has_the_mlperf_model():
    shapes = reference_state_dict_shapes()
    assert len(shapes) == 5044
    assert sum(math.prod(s) for s in shapes.values()) == 93_229_082
    assert shapes["structure_module.ipa.linear_out.weight"] == (384, 2112)
    assert shapes["structure_module.ipa.head_weights"] == (12,)


@pytest.mark.skipif(not SHARED_TSV.exists(), reason="shared reference list not present")
def test_packaged_list_is_the_shared_reference_list():
    rows = SHARED_TSV.read_text().splitlines()[1:]
    expected = {}
    for row in rows:
        name, shape = row.split("\t")
        expected[name] = tuple(int(d) for d in shape.split("x"))
    assert list(reference_state_dict_shapes().items()) == list(expected.items())


def test_shapes_for_a_config_follow_the_mapping():
    from scalefold.model.config import AlphaFoldConfig

    assert list(reference_state_dict_shapes(AlphaFoldConfig.mlperf()).items()) == list(
        reference_state_dict_shapes().items()
    )
    tiny = reference_state_dict_shapes(AlphaFoldConfig.tiny())
    assert set(tiny) < set(reference_state_dict_shapes())
    assert tiny["evoformer_stack.blocks.1.core.tri_mul_in.linear_z.weight"] == (16, 16)


# --------------------------------------------------------------------------- round trip


def test_full_size_round_trip_is_bit_exact(tmp_path):
    shapes = reference_state_dict_shapes()
    source = _random_state(shapes, seed=1)
    src_path = tmp_path / "reference.pt"
    optimizer = {"state": {0: {"step": torch.tensor(7.0)}}, "param_groups": [{"lr": 1e-3}]}
    torch.save({"alphafold_state_dict": source, "optimizer_state_dict": optimizer,
                "iteration": 5}, src_path)

    model = TensorListModule(shapes)
    extras = load_reference_checkpoint(model, src_path)
    assert set(extras) == {"optimizer_state_dict", "iteration"}
    assert extras["iteration"] == 5
    assert torch.equal(extras["optimizer_state_dict"]["state"][0]["step"], torch.tensor(7.0))

    out_path = tmp_path / "out" / "saved.pt"
    save_reference_checkpoint(model, out_path, extra=extras)
    del model
    saved = torch.load(out_path, weights_only=True)
    assert list(saved) == ["alphafold_state_dict", "optimizer_state_dict", "iteration"]
    state = saved["alphafold_state_dict"]
    assert list(state) == list(source)
    for name, tensor in source.items():
        assert _same_bits(tensor, state[name]), name
    assert sorted(os.listdir(out_path.parent)) == ["saved.pt"]


def test_load_accepts_a_bare_state_dict_and_a_checkpoint_dict(small_shapes):
    state = _random_state(small_shapes, seed=2)
    for source in (state, {"alphafold_state_dict": state, "iteration": 3}):
        model = TensorListModule(small_shapes)
        extras = load_reference_checkpoint(model, source)
        assert extras == ({} if source is state else {"iteration": 3})
        loaded = model.state_dict()
        assert all(_same_bits(state[n], loaded[n]) for n in state)


def test_save_writes_views_compactly_and_from_any_device(tmp_path):
    class Viewing(nn.Module):
        def __init__(self):
            super().__init__()
            self.big = nn.Parameter(torch.arange(12.0).reshape(3, 4))

        def reference_state_dict(self):
            return {"a.weight": self.big[:, :2], "b.weight": self.big[:, 2:]}

        def load_reference_state_dict(self, state):
            self.big.copy_(torch.cat([state["a.weight"], state["b.weight"]], dim=1))

    model = Viewing()
    path = save_reference_checkpoint(model, tmp_path / "v.pt")
    saved = torch.load(path, weights_only=True)["alphafold_state_dict"]
    assert saved["a.weight"].untyped_storage().nbytes() == 6 * 4
    assert torch.equal(saved["b.weight"], torch.tensor([[2.0, 3.0], [6.0, 7.0], [10.0, 11.0]]))
    other = Viewing()
    with torch.no_grad():
        other.big.zero_()
    load_reference_checkpoint(other, path)
    assert torch.equal(other.big, model.big)


def test_save_replaces_atomically_and_cleans_up_on_failure(tmp_path, small_shapes, monkeypatch):
    model = TensorListModule(small_shapes)
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"previous contents")

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ref.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_reference_checkpoint(model, path)
    assert path.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    monkeypatch.undo()

    save_reference_checkpoint(model, path)
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    load_reference_checkpoint(TensorListModule(small_shapes), path)


def test_save_rejects_a_clashing_extra_entry(tmp_path, small_shapes):
    with pytest.raises(ValueError, match="alphafold_state_dict"):
        save_reference_checkpoint(
            TensorListModule(small_shapes), tmp_path / "x.pt", extra={"alphafold_state_dict": 1}
        )


def test_wrapped_models_use_the_inner_names(small_shapes):
    inner = TensorListModule(small_shapes)
    compiled_like = nn.Module()
    compiled_like._orig_mod = inner  # what torch.compile's wrapper looks like
    load_reference_checkpoint(compiled_like, _random_state(small_shapes))


# --------------------------------------------------------------------------- names, shapes


def test_missing_unexpected_and_misshaped_names_in_one_error(small_shapes):
    state = _random_state(small_shapes, seed=3)
    dropped = ["evoformer_stack.blocks.7.core.tri_mul_in.linear_a_p.weight",
               "auxiliary_heads.plddt.linear_3.bias"]
    for name in dropped:
        del state[name]
    state["evoformer_stack.blocks.48.core.tri_mul_in.linear_a_p.weight"] = torch.zeros(3, 3)
    state["structure_module.ipa.linear_b.weight"] = torch.zeros(12, 128)
    model = TensorListModule(small_shapes)
    before = {n: t.clone() for n, t in model.state_dict().items()}

    with pytest.raises(CheckpointError) as info:
        load_reference_checkpoint(model, state)
    message = str(info.value)
    assert "2 missing, 1 unexpected, 1 mis-shaped" in message
    for name in dropped:
        assert name in message
    assert "evoformer_stack.blocks.48.core.tri_mul_in.linear_a_p.weight [3, 3]" in message
    assert "structure_module.ipa.linear_b.weight: [12, 128] vs [3, 3]" in message
    assert info.value.missing == dropped
    assert info.value.unexpected == ["evoformer_stack.blocks.48.core.tri_mul_in.linear_a_p.weight"]
    assert info.value.mismatched == [("structure_module.ipa.linear_b.weight", (12, 128), (3, 3))]
    # Nothing was loaded.
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_long_lists_are_cut_in_the_message_but_complete_on_the_error(small_shapes):
    model = TensorListModule(small_shapes)
    with pytest.raises(CheckpointError) as info:
        load_reference_checkpoint(model, {"alphafold_state_dict": {}})
    assert len(info.value.missing) == 5044
    assert "... and 5004 more" in str(info.value)
    assert str(info.value).count("\n") < 60


def test_ddp_prefix_gets_a_hint(small_shapes):
    state = {f"module.{n}": t for n, t in _random_state(small_shapes).items()}
    with pytest.raises(CheckpointError, match="DistributedDataParallel"):
        load_reference_checkpoint(TensorListModule(small_shapes), state)


def test_values_that_are_not_tensors(small_shapes):
    state = _random_state(small_shapes)
    state["input_embedder.linear_tf_m.bias"] = [0.0, 1.0]
    with pytest.raises(CheckpointError, match="not tensors"):
        load_reference_checkpoint(TensorListModule(small_shapes), {"alphafold_state_dict": state})


# --------------------------------------------------------------------------- bad files


def _assert_names_file(path, match=None):
    with pytest.raises(CheckpointError) as info:
        load_reference_checkpoint(TensorListModule({"a": (2,)}), path)
    assert str(path) in str(info.value)
    if match:
        assert match in str(info.value)
    return info.value


def test_truncated_file(tmp_path):
    path = tmp_path / "truncated.pt"
    torch.save({"alphafold_state_dict": {"a": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:1500])
    _assert_names_file(path, "not a readable PyTorch checkpoint")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    _assert_names_file(path, "not a readable PyTorch checkpoint")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    _assert_names_file(path, "empty file")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_plain_pickle_of_a_list(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    _assert_names_file(path)


def test_a_torch_file_that_is_not_a_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    _assert_names_file(path, "expected a dict")


def test_a_dict_without_the_state_dict(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"a": torch.zeros(2)}, "epoch": 3}, path)
    _assert_names_file(path, "top-level keys: 'model', 'epoch'")


def test_state_dict_entry_that_is_not_a_dict(tmp_path):
    path = tmp_path / "bad_entry.pt"
    torch.save({"alphafold_state_dict": [torch.zeros(2)]}, path)
    _assert_names_file(path, "not a dict")


def test_untrusted_python_objects_need_explicit_trust(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"alphafold_state_dict": {"a": torch.ones(2)},
                "args": argparse.Namespace(lr=1.0)}, path)
    error = _assert_names_file(path, "trust_pickle=True")
    assert isinstance(error, ValueError)
    model = TensorListModule({"a": (2,)})
    extras = load_reference_checkpoint(model, path, trust_pickle=True)
    assert extras["args"].lr == 1.0
    assert torch.equal(model.a, torch.ones(2))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_reference_checkpoint(TensorListModule({"a": (2,)}), tmp_path / "nope.pt")
    _assert_names_file(tmp_path, "directory")


# --------------------------------------------------------------------------- helpers


def test_sha256_file_streams(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(100_003)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_optimizer_state_by_name():
    names = ["x.weight", "x.bias"]
    shapes = {"x.weight": (2, 3), "x.bias": (2,)}
    state = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2, 3)},
                       1: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2)}}}
    by_name = optimizer_state_by_name(state, names, shapes)
    assert by_name["x.weight"]["exp_avg"].shape == (2, 3)
    with pytest.raises(CheckpointError, match="does not match"):
        optimizer_state_by_name(state, names[::-1], shapes)
    with pytest.raises(CheckpointError, match="only 1 names"):
        optimizer_state_by_name(state, names[:1])


# --------------------------------------------------------------------------- the model


def test_alphafold_tiny_round_trip(tmp_path):
    model_module = pytest.importorskip("scalefold.model")
    from scalefold.model.config import AlphaFoldConfig

    cfg = AlphaFoldConfig.tiny()
    torch.manual_seed(0)
    model = model_module.AlphaFold(cfg)
    shapes = reference_state_dict_shapes(cfg)
    assert {n: tuple(t.shape) for n, t in model.state_dict().items()} == shapes

    source = {n: torch.randn(s) for n, s in shapes.items()}
    path = tmp_path / "tiny.pt"
    torch.save({"alphafold_state_dict": source}, path)
    load_reference_checkpoint(model, path)
    save_reference_checkpoint(model, tmp_path / "again.pt")
    saved = torch.load(tmp_path / "again.pt", weights_only=True)["alphafold_state_dict"]
    assert all(_same_bits(source[n], saved[n]) for n in source)

    mlperf = TensorListModule(_small_shapes())
    with pytest.raises(CheckpointError, match="unexpected"):
        load_reference_checkpoint(model, mlperf.state_dict())
