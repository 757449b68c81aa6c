"""The geometric part of a policy: per-sample affine matrices and one resampling for image and mask.

All geometric transforms of a sample (flip, rotation, scale, shift, crop, elastic displacement)
are folded into ONE sampling grid (``F.affine_grid`` + displacement field) and ONE
``F.grid_sample`` for image and mask, in 2D and 3D alike: one resampling instead of one per
transform avoids compounding interpolation blur and is faster. The rotation matrices come from
kornia (``angle_to_rotation_matrix``; ``axis_angle_to_rotation_matrix`` in 3D).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def affine_matrix(p: dict, n: int, dims: int) -> torch.Tensor:
    """(N, d, d+1) affine ``theta`` for ``F.affine_grid`` (output → input, normalized coords) from
    drawn parameters ``p`` (``angle``/``axis``/``scale``/``shift``, ``zoom``/``crop_center``, ``flip``)."""
    d = dims
    A = torch.eye(d).repeat(n, 1, 1)
    b = torch.zeros(n, d)
    if "angle" in p:
        from kornia.geometry.conversions import angle_to_rotation_matrix, axis_angle_to_rotation_matrix
        R = (angle_to_rotation_matrix(p["angle"]) if d == 2
             else axis_angle_to_rotation_matrix(p["axis"] * torch.deg2rad(p["angle"]).unsqueeze(1)))
        A = R / p["scale"].view(n, 1, 1)
        b = p["shift"].clone()
    if "zoom" in p:
        A = A / p["zoom"].view(n, 1, 1)
        b = b / p["zoom"].view(n, 1) + p["crop_center"]
    if "flip" in p:  # first grid coordinate is x = the last (left-right) axis
        sign = torch.ones(n, d)
        sign[:, 0] = 1 - 2 * p["flip"].float()
        A = A * sign.unsqueeze(1)
    return torch.cat([A, b.unsqueeze(2)], dim=2)


def warp(x: torch.Tensor, masks: torch.Tensor | None, theta: torch.Tensor,
         displacement: torch.Tensor | None = None, padding: str = "zeros"):
    """Resample ``x`` (bilinear, border ``padding``) and ``masks`` (nearest, zeros outside; label
    values kept, dtype kept) on the grid of ``theta`` plus an optional ``displacement`` field."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if displacement is not None:
        grid = grid + displacement
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    if masks is not None:
        m = F.grid_sample(masks.to(x.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        masks = m.round().to(masks.dtype) if not masks.is_floating_point() else m
    return x, masks
