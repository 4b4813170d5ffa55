"""The sigmoid-gate swap: same model, same state dict (kernel parity: test_kernels.py)."""

from __future__ import annotations

import torch

from scalefold.kernels import TritonSigmoidGate, swap_gates
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.primitives import SigmoidGate
from scalefold.utils.synthetic import synthetic_batch


def test_swap_gates_keeps_state_dict_and_outputs():
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    names = list(model.state_dict())
    n_gates = sum(type(m) is SigmoidGate for m in model.modules())
    assert n_gates > 0
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1, num_iterations=1)
    with torch.no_grad():
        ref = model(batch)["final_atom_positions"]
        swap_gates(model)
        got = model(batch)["final_atom_positions"]
    assert list(model.state_dict()) == names
    assert sum(isinstance(m, TritonSigmoidGate) for m in model.modules()) == n_gates
    # Off the GPU (and outside the interpreter) the swapped gate is PyTorch's math.
    assert torch.equal(got, ref)
