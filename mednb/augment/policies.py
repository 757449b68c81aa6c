"""Named augmentation policies: the :class:`Policy` class, the registry and the single transforms.

A policy draws every sample's random parameters on the CPU from a ``torch.Generator``
(:meth:`Policy.sample`), then applies them on the batch's device (:meth:`Policy.apply`): one
resampling for the geometric part (:mod:`.geometry`, :mod:`.elastic`), then the intensity part
(:mod:`.intensity`). kornia's own ``kornia.augmentation`` draws from torch's global RNG and takes
no ``torch.Generator``, so the random parameters are drawn here and only kornia's functional
operations with explicit per-sample parameters are used.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..runtime import check_name
from . import elastic, intensity
from .geometry import affine_matrix, warp

#: component switches of each policy
POLICIES: dict[str, dict[str, bool]] = {
    "none": dict(),
    "flip": dict(flip=True),
    "basic": dict(flip=True, affine=True, crop=True),
    "intensity": dict(intensity=True, noise=True),
    "elastic": dict(elastic=True),
    "strong": dict(flip=True, affine=True, crop=True, elastic=True, intensity=True, noise=True),
}
GEOMETRIC = ("flip", "basic", "elastic", "strong")

#: magnitudes at strength 1 (sizes in px refer to a 28-px image and scale with the image size)
DEFAULTS = dict(flip_p=0.5, rotate_deg=15.0, shift=0.10, scale=0.15, crop_zoom=0.25,
                elastic_sigma=4.0, elastic_alpha=34.0, gamma=0.4, contrast=0.3, brightness=0.1,
                noise_sd=0.05, padding="zeros")


def names() -> list[str]:
    """Valid policy names."""
    return list(POLICIES)


def _check(name: str) -> str:
    return check_name(name, POLICIES, "augmentation policy")


@dataclass(frozen=True)
class Policy:
    """A named augmentation policy; call it as ``policy(x, masks=None, generator=None)``.

    ``sample(n, generator)`` draws the per-sample parameters (a dict of CPU tensors) and
    ``apply(x, masks, params)`` applies them, so a figure can show exactly what was drawn.
    """
    name: str
    strength: float = 1.0
    dims: int = 2
    flip: bool = False
    affine: bool = False
    crop: bool = False
    elastic: bool = False
    intensity: bool = False
    noise: bool = False
    cfg: tuple = tuple(sorted(DEFAULTS.items()))

    @property
    def c(self) -> dict:
        return dict(self.cfg)

    @property
    def geometric(self) -> bool:
        return self.flip or self.affine or self.crop or self.elastic

    def __repr__(self) -> str:
        parts = [k for k in ("flip", "affine", "crop", "elastic", "intensity", "noise") if getattr(self, k)]
        return f"Policy({self.name!r}, strength={self.strength}, dims={self.dims}, [{', '.join(parts) or 'identity'}])"

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict:
        """Per-sample parameters for a batch of ``n`` (CPU tensors)."""
        g, s, c, d = generator, float(self.strength), self.c, self.dims
        u = lambda *shape: torch.rand(*shape, generator=g) * 2 - 1  # U(-1, 1)
        p: dict = {}
        if self.flip:
            p["flip"] = torch.rand(n, generator=g) < c["flip_p"] * min(s, 1.0)
        if self.affine:
            if d == 3:
                axis = torch.randn(n, 3, generator=g)
                p["axis"] = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-8)
            p["angle"] = u(n) * c["rotate_deg"] * s
            p["scale"] = 1 + u(n) * c["scale"] * s
            p["shift"] = u(n, d) * c["shift"] * s * 2  # normalized coordinates span 2
        if self.crop:
            zoom = 1 + torch.rand(n, generator=g) * c["crop_zoom"] * s  # crop side = 1/zoom of the image
            p["zoom"] = zoom
            p["crop_center"] = u(n, d) * (1 - 1 / zoom).unsqueeze(1)
        if self.intensity:
            p["gamma"] = torch.exp(u(n) * c["gamma"] * s)
            p["contrast"] = 1 + u(n) * c["contrast"] * s
            p["brightness"] = u(n) * c["brightness"] * s
        if self.noise:
            p["noise_sd"] = torch.rand(n, generator=g) * c["noise_sd"] * s
            p["noise_seed"] = int(torch.randint(0, 2**62, (1,), generator=g))
        if self.elastic:
            p["seed"] = int(torch.randint(0, 2**62, (1,), generator=g))
        return p

    def matrix(self, p: dict, n: int) -> torch.Tensor:
        """(N, d, d+1) affine ``theta`` for ``F.affine_grid`` (output → input, normalized coords)."""
        return affine_matrix(p, n, self.dims)

    def displacement(self, p: dict, n: int, spatial, device, dtype=torch.float32) -> torch.Tensor:
        """Elastic displacement (N, *spatial, d) in normalized grid units (Simard et al. 2003)."""
        c = self.c
        return elastic.displacement(n, spatial, c["elastic_sigma"], c["elastic_alpha"] * float(self.strength),
                                    p["seed"], device, dtype)

    def apply(self, x: torch.Tensor, masks: torch.Tensor | None, p: dict):
        """Apply drawn parameters ``p`` to ``x`` (float [0,1]) and ``masks`` (nearest)."""
        if x.ndim != self.dims + 2:
            raise ValueError(f"policy {self.name!r} is for {self.dims}D batches (ndim {self.dims + 2}); "
                             f"got shape {tuple(x.shape)} — use augment.get(name, dims={x.ndim - 2})")
        n, spatial, dev = x.shape[0], x.shape[2:], x.device
        if masks is not None and masks.shape[2:] != spatial:
            raise ValueError(f"masks {tuple(masks.shape)} and images {tuple(x.shape)} differ in spatial size")
        if self.geometric and n:
            theta = self.matrix(p, n).to(dev, x.dtype)
            disp = self.displacement(p, n, spatial, dev, x.dtype) if self.elastic else None
            x, masks = warp(x, masks, theta, disp, self.c["padding"])
        if self.intensity and n:
            x = intensity.adjust(x, p)
        if self.noise and n:
            x = intensity.add_noise(x, p)
        return x, masks

    def __call__(self, x: torch.Tensor, masks: torch.Tensor | None = None,
                 generator: torch.Generator | None = None):
        if generator is None:  # follow the global seed (mednb.seed_everything)
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return self.apply(x, masks, self.sample(len(x), generator))


def get(name: str, strength: float = 1.0, dims: int = 2, **overrides) -> Policy:
    """The policy ``name`` (see :func:`names`) at ``strength`` (≥ 0) for ``dims`` 2 or 3.

    overrides: magnitudes of :data:`DEFAULTS` at strength 1, e.g. ``rotate_deg=30``, ``padding="reflection"``.
    """
    key = _check(name)
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    if not float(strength) >= 0:
        raise ValueError(f"strength must be >= 0, got {strength!r}")
    bad = set(overrides) - set(DEFAULTS)
    if bad:
        raise ValueError(f"unknown augmentation setting(s) {sorted(bad)}; valid: {', '.join(DEFAULTS)}")
    if overrides.get("padding", "zeros") not in ("zeros", "border", "reflection"):
        raise ValueError(f"unknown padding {overrides['padding']!r}; valid: zeros, border, reflection")
    cfg = tuple(sorted({**DEFAULTS, **overrides}.items()))
    return Policy(key, float(strength), int(dims), cfg=cfg, **POLICIES[key])


#: single transforms of the policies, alone (galleries, explorer): name -> (policy, magnitudes set to 0)
TRANSFORMS: dict[str, tuple[str, dict]] = {
    "flip": ("flip", {}),
    "rotate": ("basic", dict(flip_p=0.0, shift=0.0, scale=0.0, crop_zoom=0.0)),
    "shift": ("basic", dict(flip_p=0.0, rotate_deg=0.0, scale=0.0, crop_zoom=0.0)),
    "scale": ("basic", dict(flip_p=0.0, rotate_deg=0.0, shift=0.0, crop_zoom=0.0)),
    "crop": ("basic", dict(flip_p=0.0, rotate_deg=0.0, shift=0.0, scale=0.0)),
    "elastic": ("elastic", {}),
    "gamma": ("intensity", dict(contrast=0.0, brightness=0.0, noise_sd=0.0)),
    "contrast": ("intensity", dict(gamma=0.0, brightness=0.0, noise_sd=0.0)),
    "brightness": ("intensity", dict(gamma=0.0, contrast=0.0, noise_sd=0.0)),
    "noise": ("intensity", dict(gamma=0.0, contrast=0.0, brightness=0.0)),
}


def transforms() -> list[str]:
    """Names of the single transforms (see :func:`transform`)."""
    return list(TRANSFORMS)


def transform(name: str, strength: float = 1.0, dims: int = 2) -> Policy:
    """ONE transform of the policies alone (e.g. ``rotate``: ``basic`` with every other magnitude
    set to 0), at ``strength``, for ``dims`` 2 or 3 — to show what each transform does."""
    key = check_name(name, TRANSFORMS, "transform")
    policy, zero = TRANSFORMS[key]
    return dataclasses.replace(get(policy, strength, dims, **zero), name=key)


def named(name: str, strength: float = 1.0, dims: int = 2) -> Policy:
    """A policy (:func:`names`) or, failing that, a single transform (:func:`transforms`)."""
    key = str(name).lower()
    if key in POLICIES:
        return get(key, strength, dims)
    if key in TRANSFORMS:
        return transform(key, strength, dims)
    raise ValueError(f"unknown augmentation {name!r}; valid policies: {', '.join(POLICIES)}; "
                     f"single transforms: {', '.join(TRANSFORMS)}")
