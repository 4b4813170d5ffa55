"""Rigid transformations (rotation matrix + translation) and quaternion helpers.

Conventions follow AlphaFold v2.3 (`alphafold.model.r3`, `alphafold.model.quat_affine`):
quaternions are w-first, a `Rigid` maps local to global coordinates (x -> R x + t), and
`compose(a, b)` applies `b` first. All products of small matrices are written out as
broadcast multiply + sum rather than `matmul`, so that autocast never drops them to half
precision and TF32 never truncates them; everything is shape-static and free of host
synchronisation, so the structure module can be captured in a CUDA graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

# --------------------------------------------------------------------------------------
# Small-matrix algebra.
# --------------------------------------------------------------------------------------


def rot_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for [*, 3, 3] rotations (broadcasting batch dims)."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(dim=-2)


def rot_vec_mul(r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """r @ v for r [*, 3, 3] and v [*, 3]."""
    return (r * v[..., None, :]).sum(dim=-1)


def rot_transpose(r: torch.Tensor) -> torch.Tensor:
    return r.transpose(-1, -2)


# --------------------------------------------------------------------------------------
# Quaternions (w, x, y, z).
# --------------------------------------------------------------------------------------


def quat_to_rot(quat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [*, 3, 3] of a unit quaternion [*, 4] (w first)."""
    w, x, y, z = quat.unbind(dim=-1)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    wx, wy, wz = w * x, w * y, w * z
    xy, xz, yz = x * y, x * z, y * z
    rows = (
        (ww + xx - yy - zz, 2 * (xy - wz), 2 * (xz + wy)),
        (2 * (xy + wz), ww - xx + yy - zz, 2 * (yz - wx)),
        (2 * (xz - wy), 2 * (yz + wx), ww - xx - yy + zz),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def quat_multiply(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Hamilton product q1 * q2 of [*, 4] quaternions."""
    a1, b1, c1, d1 = q1.unbind(dim=-1)
    a2, b2, c2, d2 = q2.unbind(dim=-1)
    return torch.stack(
        (
            a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
            a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
            a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
            a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
        ),
        dim=-1,
    )


def quat_multiply_by_vec(quat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """quat * (0, vec) for quat [*, 4] and a pure-vector quaternion vec [*, 3]."""
    a, b, c, d = quat.unbind(dim=-1)
    x, y, z = vec.unbind(dim=-1)
    return torch.stack(
        (
            -b * x - c * y - d * z,
            a * x + c * z - d * y,
            a * y - b * z + d * x,
            a * z + b * y - c * x,
        ),
        dim=-1,
    )


def rot_to_quat(rot: torch.Tensor) -> torch.Tensor:
    """Unit quaternion [*, 4] (w >= 0) of a rotation matrix [*, 3, 3].

    AlphaFold takes the top eigenvector of a symmetric 4x4 matrix, which fixes the
    quaternion only up to sign and needs an eigen-solver; this uses the branch-free form
    of Shepperd's method instead (the four candidate formulas, each keyed on one of
    w, x, y, z, choosing the numerically best per element), then fixes the sign w >= 0.
    Same rotation, no data-dependent control flow.
    """
    m = rot
    xx, xy, xz = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    yx, yy, yz = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    zx, zy, zz = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * (w^2, x^2, y^2, z^2), each from the diagonal.
    four_sq = torch.stack(
        (
            1 + xx + yy + zz,
            1 + xx - yy - zz,
            1 - xx + yy - zz,
            1 - xx - yy + zz,
        ),
        dim=-1,
    )
    # Candidate k holds 4 * q_k * q, computed from off-diagonal sums/differences.
    candidates = torch.stack(
        (
            torch.stack((four_sq[..., 0], zy - yz, xz - zx, yx - xy), dim=-1),
            torch.stack((zy - yz, four_sq[..., 1], xy + yx, xz + zx), dim=-1),
            torch.stack((xz - zx, xy + yx, four_sq[..., 2], yz + zy), dim=-1),
            torch.stack((yx - xy, xz + zx, yz + zy, four_sq[..., 3]), dim=-1),
        ),
        dim=-2,
    )  # [*, 4, 4]
    best = four_sq.argmax(dim=-1, keepdim=True)  # [*, 1]
    q = torch.take_along_dim(candidates, best[..., None], dim=-2).squeeze(-2)  # [*, 4]
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


def quat_backbone_update(
    quat: torch.Tensor, trans: torch.Tensor, update: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaFold's `QuatAffine.pre_compose`: apply a backbone update before (quat, trans).

    quat [*, 4] must be a unit quaternion, trans [*, 3], update [*, 6] = (b, c, d, tx, ty, tz).
    The rotation update is the non-normalised quaternion (1, b, c, d), so the new quaternion
    is quat + quat * (0, b, c, d), renormalised; the translation update is rotated by the old
    rotation. Returns (new_quat [*, 4], new_trans [*, 3]).
    """
    rot = quat_to_rot(quat)
    new_quat = quat + quat_multiply_by_vec(quat, update[..., :3])
    new_quat = new_quat / torch.linalg.vector_norm(new_quat, dim=-1, keepdim=True)
    new_trans = trans + rot_vec_mul(rot, update[..., 3:])
    return new_quat, new_trans


def rigid_from_quat(quat: torch.Tensor, trans: torch.Tensor) -> Rigid:
    """Rigid from a unit quaternion [*, 4] (w first) and translation [*, 3]."""
    return Rigid(quat_to_rot(quat), trans)


# --------------------------------------------------------------------------------------
# Rigid.
# --------------------------------------------------------------------------------------


def _normalize(v: torch.Tensor, eps: float) -> torch.Tensor:
    # eps inside the sqrt (AlphaFold's robust norm) keeps gradients finite at v = 0.
    return v / torch.sqrt((v * v).sum(dim=-1, keepdim=True) + eps)


@dataclasses.dataclass(frozen=True)
class Rigid:
    """Batch of rigid transformations x -> rot @ x + trans.

    rot: [*, 3, 3], trans: [*, 3]; the batch shape `*` is `Rigid.shape`. Immutable: every
    method returns a new object.
    """

    rot: torch.Tensor
    trans: torch.Tensor

    # Construction -----------------------------------------------------------------

    @classmethod
    def identity(
        cls,
        batch_shape: Sequence[int] | torch.Size,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        requires_grad: bool = False,
    ) -> Rigid:
        shape = tuple(batch_shape)
        rot = torch.eye(3, dtype=dtype, device=device).expand(*shape, 3, 3).contiguous()
        trans = torch.zeros(*shape, 3, dtype=dtype, device=device)
        if requires_grad:
            rot.requires_grad_(True)
            trans.requires_grad_(True)
        return cls(rot, trans)

    @classmethod
    def from_tensor_4x4(cls, t: torch.Tensor) -> Rigid:
        """From homogeneous matrices [*, 4, 4] (rotation top-left, translation last column)."""
        if t.shape[-2:] != (4, 4):
            raise ValueError(f"expected [..., 4, 4], got {tuple(t.shape)}")
        return cls(t[..., :3, :3], t[..., :3, 3])

    @classmethod
    def from_3_points(
        cls,
        p_neg_x_axis: torch.Tensor,
        origin: torch.Tensor,
        p_xy_plane: torch.Tensor,
        eps: float = 1e-8,
    ) -> Rigid:
        """Frame by Gram-Schmidt (AF2 suppl. Alg. 21, `r3.rigids_from_3_points`).

        x points from `p_neg_x_axis` to `origin`, `p_xy_plane` lies in the xy-plane with
        positive y; all inputs [*, 3].
        """
        e0 = _normalize(origin - p_neg_x_axis, eps)
        e1 = p_xy_plane - origin
        e1 = _normalize(e1 - (e1 * e0).sum(dim=-1, keepdim=True) * e0, eps)
        e2 = torch.linalg.cross(e0, e1, dim=-1)
        rot = torch.stack((e0, e1, e2), dim=-1)  # columns are the frame axes
        return cls(rot, origin)

    @classmethod
    def make_transform_from_reference(
        cls,
        n_xyz: torch.Tensor,
        ca_xyz: torch.Tensor,
        c_xyz: torch.Tensor,
        eps: float = 1e-20,
    ) -> Rigid:
        """Backbone frame as AlphaFold's `quat_affine.make_transform_from_reference`.

        Origin at CA, C on the positive x-axis, N in the xy-plane with positive y, built
        from three elementary rotations (z, then y, then x). Used for the template unit
        vectors; close to, but not bitwise the same as, the Gram-Schmidt backbone frame.
        Inputs [*, 3].
        """
        c = c_xyz - ca_xyz
        n = n_xyz - ca_xyz
        cx, cy, cz = c.unbind(dim=-1)
        zero = torch.zeros_like(cx)
        one = torch.ones_like(cx)

        # Rotate about z so that C lies in the xz-plane.
        norm_xy = torch.sqrt(eps + cx * cx + cy * cy)
        sin1, cos1 = -cy / norm_xy, cx / norm_xy
        rot1 = _rows((cos1, -sin1, zero), (sin1, cos1, zero), (zero, zero, one))
        # Rotate about y so that C lies on the x-axis.
        norm_xyz = torch.sqrt(eps + cx * cx + cy * cy + cz * cz)
        sin2 = cz / norm_xyz
        cos2 = torch.sqrt(cx * cx + cy * cy) / norm_xyz
        rot2 = _rows((cos2, zero, sin2), (zero, one, zero), (-sin2, zero, cos2))
        c_rot = rot_matmul(rot2, rot1)
        # Rotate about x so that N lies in the xy-plane.
        _, ny, nz = rot_vec_mul(c_rot, n).unbind(dim=-1)
        norm_yz = torch.sqrt(eps + ny * ny + nz * nz)
        sin3, cos3 = -nz / norm_yz, ny / norm_yz
        rot3 = _rows((one, zero, zero), (zero, cos3, -sin3), (zero, sin3, cos3))
        # The product maps global to canonical coordinates; its transpose maps back.
        canonical = rot_matmul(rot3, c_rot)
        return cls(rot_transpose(canonical), ca_xyz)

    # Conversion -------------------------------------------------------------------

    def to_tensor_4x4(self) -> torch.Tensor:
        """Homogeneous matrices [*, 4, 4]."""
        top = torch.cat((self.rot, self.trans[..., None]), dim=-1)  # [*, 3, 4]
        # Built on the device (no host-to-device copy), so it is safe inside graph capture.
        zeros = self.trans.new_zeros(()).expand(*self.shape, 1, 3)
        one = self.trans.new_ones(()).expand(*self.shape, 1, 1)
        return torch.cat((top, torch.cat((zeros, one), dim=-1)), dim=-2)

    def to_tensor_7(self) -> torch.Tensor:
        """(quaternion w-first, translation) [*, 7]."""
        return torch.cat((rot_to_quat(self.rot), self.trans), dim=-1)

    @classmethod
    def from_tensor_7(cls, t: torch.Tensor, normalize_quats: bool = False) -> Rigid:
        quat = t[..., :4]
        if normalize_quats:
            quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
        return cls(quat_to_rot(quat), t[..., 4:])

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Rigid:
        return Rigid(
            self.rot.to(device=device, dtype=dtype), self.trans.to(device=device, dtype=dtype)
        )

    # Properties -------------------------------------------------------------------

    @property
    def shape(self) -> torch.Size:
        return self.trans.shape[:-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.trans.dtype

    @property
    def device(self) -> torch.device:
        return self.trans.device

    # Algebra ----------------------------------------------------------------------

    def compose(self, other: Rigid) -> Rigid:
        """self o other: apply `other` first, then `self`."""
        return Rigid(
            rot_matmul(self.rot, other.rot),
            rot_vec_mul(self.rot, other.trans) + self.trans,
        )

    def compose_rot(self, rot: torch.Tensor) -> Rigid:
        """self o (rot, 0) for rot [*, 3, 3]."""
        return Rigid(rot_matmul(self.rot, rot), self.trans)

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """Map local points [*, 3] (batch broadcast against `shape`) to global."""
        return rot_vec_mul(self.rot, points) + self.trans

    def invert(self) -> Rigid:
        rot_inv = rot_transpose(self.rot)
        return Rigid(rot_inv, -rot_vec_mul(rot_inv, self.trans))

    def invert_apply(self, points: torch.Tensor) -> torch.Tensor:
        """Map global points [*, 3] into this frame."""
        return rot_vec_mul(rot_transpose(self.rot), points - self.trans)

    # Shape manipulation -----------------------------------------------------------

    def __getitem__(self, index) -> Rigid:
        """Index the batch dims only, as a tensor of shape `self.shape` would be."""
        if not isinstance(index, tuple):
            index = (index,)
        return Rigid(
            self.rot[index + (slice(None), slice(None))], self.trans[index + (slice(None),)]
        )

    def unsqueeze(self, dim: int) -> Rigid:
        """Insert a batch dim; negative `dim` counts from the end of the batch dims."""
        if dim < 0:
            dim = len(self.shape) + 1 + dim
        return Rigid(self.rot.unsqueeze(dim), self.trans.unsqueeze(dim))

    def reshape(self, *batch_shape: int) -> Rigid:
        if len(batch_shape) == 1 and isinstance(batch_shape[0], Sequence):
            batch_shape = tuple(batch_shape[0])
        return Rigid(self.rot.reshape(*batch_shape, 3, 3), self.trans.reshape(*batch_shape, 3))

    def expand(self, *batch_shape: int) -> Rigid:
        return Rigid(self.rot.expand(*batch_shape, 3, 3), self.trans.expand(*batch_shape, 3))

    @staticmethod
    def cat(rigids: Sequence[Rigid], dim: int) -> Rigid:
        """Concatenate along an existing batch dim."""
        dim_rot = dim - 2 if dim < 0 else dim
        dim_trans = dim - 1 if dim < 0 else dim
        return Rigid(
            torch.cat([r.rot for r in rigids], dim=dim_rot),
            torch.cat([r.trans for r in rigids], dim=dim_trans),
        )

    @staticmethod
    def stack(rigids: Sequence[Rigid], dim: int) -> Rigid:
        """Stack along a new batch dim."""
        dim_rot = dim - 2 if dim < 0 else dim
        dim_trans = dim - 1 if dim < 0 else dim
        return Rigid(
            torch.stack([r.rot for r in rigids], dim=dim_rot),
            torch.stack([r.trans for r in rigids], dim=dim_trans),
        )

    # Gradient / scale helpers -----------------------------------------------------

    def scale_translation(self, factor: float | torch.Tensor) -> Rigid:
        return Rigid(self.rot, self.trans * factor)

    def stop_rot_gradient(self) -> Rigid:
        """Detach the rotation only (AlphaFold stops rotation gradients between layers)."""
        return Rigid(self.rot.detach(), self.trans)

    def detach(self) -> Rigid:
        return Rigid(self.rot.detach(), self.trans.detach())

    def mask(self, mask: torch.Tensor) -> Rigid:
        """Multiply rot and trans by mask [*] (masked entries become all-zero)."""
        return Rigid(self.rot * mask[..., None, None], self.trans * mask[..., None])


def _rows(*rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)
