"""scalefold.geometry.rigid: algebra identities and parity with AlphaFold's r3/quat_affine."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from scalefold.geometry.rigid import (
    Rigid,
    quat_backbone_update,
    quat_multiply,
    quat_multiply_by_vec,
    quat_to_rot,
    rigid_from_quat,
    rot_matmul,
    rot_to_quat,
)

from .geometry_helpers import random_rigid

ATOL = 1e-6


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _unit_quats(gen, n, dtype=torch.float32):
    q = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    # Include the identity and half-turns (w = 0), where quaternion extraction is hardest.
    q[0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    q[1] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    q[2] = torch.tensor([0.0, 0.6, 0.8, 0.0], dtype=torch.float64)
    q[3] = torch.tensor([1e-4, 0.0, 0.0, 1.0], dtype=torch.float64)
    return (q / q.norm(dim=-1, keepdim=True)).to(dtype)


# ---------------------------------------------------------------------------------------
# Identities (no oracle).
# ---------------------------------------------------------------------------------------


def test_quat_to_rot_is_rotation(gen):
    rot = quat_to_rot(_unit_quats(gen, 64, torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand_as(rot)
    torch.testing.assert_close(rot_matmul(rot, rot.transpose(-1, -2)), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(64, dtype=torch.float64))


def test_quat_rot_round_trip(gen):
    quat = _unit_quats(gen, 256, torch.float64)
    back = rot_to_quat(quat_to_rot(quat))
    assert (back[:, 0] >= 0).all()
    # q and -q are the same rotation.
    sign = torch.where((back * quat).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(quat.dtype)
    torch.testing.assert_close(back * sign, quat, atol=1e-10, rtol=0)
    torch.testing.assert_close(quat_to_rot(back), quat_to_rot(quat), atol=1e-12, rtol=0)


def test_quat_multiply_matches_rotation_product(gen):
    q1, q2 = _unit_quats(gen, 32, torch.float64), _unit_quats(gen, 32, torch.float64).flip(0)
    torch.testing.assert_close(
        quat_to_rot(quat_multiply(q1, q2)),
        rot_matmul(quat_to_rot(q1), quat_to_rot(q2)),
        atol=1e-12,
        rtol=0,
    )
    v = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        quat_multiply_by_vec(q1, v),
        quat_multiply(q1, torch.cat((torch.zeros(32, 1, dtype=v.dtype), v), -1)),
    )


def test_compose_invert_apply_round_trips(gen):
    a = random_rigid(gen, (5, 7), dtype=torch.float64)
    b = random_rigid(gen, (5, 7), dtype=torch.float64)
    x = torch.randn(5, 7, 3, generator=gen, dtype=torch.float64)
    ident = a.compose(a.invert())
    torch.testing.assert_close(ident.rot, torch.eye(3, dtype=torch.float64).expand(5, 7, 3, 3))
    torch.testing.assert_close(ident.trans, torch.zeros(5, 7, 3, dtype=torch.float64))
    torch.testing.assert_close(a.compose(b).apply(x), a.apply(b.apply(x)))
    torch.testing.assert_close(a.invert_apply(a.apply(x)), x)
    torch.testing.assert_close(a.invert().apply(x), a.invert_apply(x))
    torch.testing.assert_close(
        a.compose(b).invert().to_tensor_4x4(), b.invert().compose(a.invert()).to_tensor_4x4()
    )
    # 4x4 matrices compose by matrix product.
    torch.testing.assert_close(a.compose(b).to_tensor_4x4(), a.to_tensor_4x4() @ b.to_tensor_4x4())
    m = a.to_tensor_4x4()
    assert m.shape == (5, 7, 4, 4)
    torch.testing.assert_close(
        m[..., 3, :], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype).expand(5, 7, 4)
    )
    torch.testing.assert_close(Rigid.from_tensor_4x4(m).to_tensor_4x4(), m)
    torch.testing.assert_close(Rigid.from_tensor_7(a.to_tensor_7()).to_tensor_4x4(), m)


def test_batch_manipulation(gen):
    r = random_rigid(gen, (4, 6))
    assert r.shape == (4, 6)
    assert r[1].shape == (6,)
    assert r[:, 2:4].shape == (4, 2)
    assert r[..., 0].shape == (4,)
    torch.testing.assert_close(r[..., 0].trans, r.trans[:, 0])
    assert r.unsqueeze(-1).shape == (4, 6, 1)
    assert r.unsqueeze(0).shape == (1, 4, 6)
    assert r.unsqueeze(-2).shape == (4, 1, 6)
    assert Rigid.cat([r, r], dim=-1).shape == (4, 12)
    assert Rigid.stack([r, r], dim=0).shape == (2, 4, 6)
    assert r.reshape(24).shape == (24,)
    # Broadcasting: one frame per residue applied to 14 atoms.
    pts = torch.randn(4, 6, 14, 3, generator=gen)
    torch.testing.assert_close(r.unsqueeze(-1).apply(pts)[:, :, 3], r.apply(pts[:, :, 3]))
    ident = Rigid.identity((2, 3), dtype=torch.float64)
    assert ident.shape == (2, 3) and ident.dtype == torch.float64
    torch.testing.assert_close(ident.apply(pts[0, :2, :3].double()), pts[0, :2, :3].double())
    assert r.to(torch.float64).dtype == torch.float64
    torch.testing.assert_close(r.scale_translation(0.1).trans, r.trans * 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.rot = r.rot  # type: ignore[misc]


def test_stop_rot_gradient(gen):
    rot = random_rigid(gen, (3,)).rot.requires_grad_(True)
    trans = torch.randn(3, 3, generator=gen, requires_grad=True)
    pts = torch.randn(3, 3, generator=gen)
    Rigid(rot, trans).stop_rot_gradient().apply(pts).sum().backward()
    assert rot.grad is None
    torch.testing.assert_close(trans.grad, torch.ones(3, 3))


def test_from_3_points_geometry_and_degenerate_gradients(gen):
    p0, origin, p2 = (torch.randn(16, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    frame = Rigid.from_3_points(p0, origin, p2)
    local0, local2 = frame.invert_apply(p0), frame.invert_apply(p2)
    torch.testing.assert_close(
        local0[:, 1:], torch.zeros(16, 2, dtype=torch.float64), atol=1e-7, rtol=0
    )
    assert (local0[:, 0] < 0).all()
    assert (local2[:, 1] > 0).all()
    torch.testing.assert_close(
        local2[:, 2], torch.zeros(16, dtype=torch.float64), atol=1e-7, rtol=0
    )
    # Coincident points (missing atoms are zeros) must give finite values and gradients.
    zeros = torch.zeros(2, 3, requires_grad=True)
    frame = Rigid.from_3_points(zeros, zeros * 1.0, zeros * 2.0)
    (frame.rot.sum() + frame.trans.sum()).backward()
    assert torch.isfinite(frame.rot).all() and torch.isfinite(zeros.grad).all()


def test_make_transform_from_reference_places_reference_backbone(gen):
    frame = random_rigid(gen, (10,), dtype=torch.float64)
    n_ref = torch.tensor([-0.525, 1.363, 0.0], dtype=torch.float64)
    c_ref = torch.tensor([1.526, 0.0, 0.0], dtype=torch.float64)
    n, c, ca = frame.apply(n_ref), frame.apply(c_ref), frame.trans
    rebuilt = Rigid.make_transform_from_reference(n, ca, c)
    torch.testing.assert_close(rebuilt.to_tensor_4x4(), frame.to_tensor_4x4())
    # Close to the Gram-Schmidt frame of the same atoms.
    gs = Rigid.from_3_points(2 * ca - c, ca, n)
    torch.testing.assert_close(gs.to_tensor_4x4(), frame.to_tensor_4x4())


# ---------------------------------------------------------------------------------------
# Parity with AlphaFold (JAX, float32).
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def af():
    pytest.importorskip("jax")
    pytest.importorskip("alphafold.model.all_atom")
    from alphafold.model import quat_affine, r3

    return quat_affine, r3


def _r3_to_rigid(r) -> Rigid:
    rot = np.stack(
        [np.stack([np.asarray(getattr(r.rot, a + b)) for b in "xyz"], -1) for a in "xyz"], -2
    )
    trans = np.stack([np.asarray(getattr(r.trans, a)) for a in "xyz"], -1)
    return Rigid(torch.from_numpy(rot), torch.from_numpy(trans))


def _rigid_to_r3(r: Rigid, r3):
    return r3.rigids_from_tensor4x4(r.to_tensor_4x4().numpy())


@pytest.mark.oracle
def test_quaternion_helpers_match_alphafold(af, gen):
    quat_affine, _ = af
    quat = _unit_quats(gen, 32)
    q2 = _unit_quats(gen, 32).flip(0)
    vec = torch.randn(32, 3, generator=gen)
    af_rot = np.stack([np.stack(row, -1) for row in quat_affine.quat_to_rot(quat.numpy())], -2)
    np.testing.assert_allclose(quat_to_rot(quat).numpy(), af_rot, atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        quat_multiply(quat, q2).numpy(),
        quat_affine.quat_multiply(quat.numpy(), q2.numpy()),
        atol=ATOL,
        rtol=0,
    )
    np.testing.assert_allclose(
        quat_multiply_by_vec(quat, vec).numpy(),
        quat_affine.quat_multiply_by_vec(quat.numpy(), vec.numpy()),
        atol=ATOL,
        rtol=0,
    )
    # AlphaFold's eigenvector quaternion is defined up to sign.
    ours = rot_to_quat(quat_to_rot(quat)).numpy()
    theirs = np.asarray(quat_affine.rot_to_quat(quat_to_rot(quat).numpy(), unstack_inputs=True))
    theirs = theirs * np.sign((theirs * ours).sum(-1, keepdims=True))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.oracle
def test_backbone_update_matches_quat_affine_pre_compose(af, gen):
    quat_affine, _ = af
    quat = _unit_quats(gen, 20)
    trans = 10 * torch.randn(20, 3, generator=gen)
    update = torch.randn(20, 6, generator=gen)
    new_quat, new_trans = quat_backbone_update(quat, trans, update)
    ref = quat_affine.QuatAffine(quat.numpy(), list(trans.numpy().T)).pre_compose(update.numpy())
    np.testing.assert_allclose(new_quat.numpy(), np.asarray(ref.quaternion), atol=ATOL, rtol=0)
    np.testing.assert_allclose(new_trans.numpy(), np.stack(ref.translation, -1), atol=1e-5, rtol=0)
    ref_rot = np.stack([np.stack(row, -1) for row in ref.rotation], -2)
    np.testing.assert_allclose(
        rigid_from_quat(new_quat, new_trans).rot.numpy(), ref_rot, atol=ATOL, rtol=0
    )


@pytest.mark.oracle
def test_rigid_ops_match_r3(af, gen):
    _, r3 = af
    a, b = random_rigid(gen, (16,)), random_rigid(gen, (16,))
    x = 10 * torch.randn(16, 3, generator=gen)
    ra, rb = _rigid_to_r3(a, r3), _rigid_to_r3(b, r3)

    def close(ours: Rigid, theirs):
        theirs = _r3_to_rigid(theirs)
        np.testing.assert_allclose(ours.rot.numpy(), theirs.rot.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(ours.trans.numpy(), theirs.trans.numpy(), atol=1e-5, rtol=0)

    close(a.compose(b), r3.rigids_mul_rigids(ra, rb))
    close(a.invert(), r3.invert_rigids(ra))
    applied = r3.vecs_to_tensor(r3.rigids_mul_vecs(ra, r3.vecs_from_tensor(x.numpy())))
    np.testing.assert_allclose(a.apply(x).numpy(), np.asarray(applied), atol=1e-5, rtol=0)

    p0, origin, p2 = (5 * torch.randn(16, 3, generator=gen) for _ in range(3))
    ref = r3.rigids_from_3_points(*(r3.vecs_from_tensor(p.numpy()) for p in (p0, origin, p2)))
    close(Rigid.from_3_points(p0, origin, p2), ref)


@pytest.mark.oracle
def test_make_transform_from_reference_matches_quat_affine(af, gen):
    quat_affine, _ = af
    n, ca, c = (5 * torch.randn(12, 3, generator=gen) for _ in range(3))
    rot, trans = quat_affine.make_transform_from_reference(n.numpy(), ca.numpy(), c.numpy())
    ours = Rigid.make_transform_from_reference(n, ca, c)
    np.testing.assert_allclose(ours.rot.numpy(), np.asarray(rot), atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours.trans.numpy(), np.asarray(trans), atol=ATOL, rtol=0)
