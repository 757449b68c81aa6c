"""Data augmentation for 2D images, masks and 3D volumes (notebook 02).

Named policies (:func:`get`, :func:`names`), each with a ``strength`` knob (0 = identity, 1 = the
defaults below, >1 = stronger)::

    none       nothing
    flip       left-right flip (p = 0.5·min(strength, 1))
    basic      flip + rotation (±15°) + shift (±10 %) + scale (±15 %) + random crop (zoom ≤ 1.25)
    intensity  gamma (×e^±0.4), contrast (×[0.7, 1.3] around the mean), brightness (±0.1), Gaussian noise (σ ≤ 0.05)
    elastic    elastic distortion (Simard, Steinkraus & Platt, ICDAR 2003: uniform random displacement
               field smoothed by a Gaussian of σ = 4 px, scaled by α = 34 px at 28 px; both scale with size)
    strong     basic + elastic + intensity

:func:`transform` gives each transform alone (``rotate``, ``shift``, ``scale``, ``crop``, ``gamma``,
``contrast``, ``brightness``, ``noise``, plus ``flip`` and ``elastic``) for galleries and the explorer.

A policy is called on float [0, 1] batches, (N,C,H,W) or (N,C,D,H,W), on any device::

    x, masks = policy(x, masks=None, generator=None)

Every sample gets its own random parameters, drawn on the CPU from ``generator`` (a
``torch.Generator``; the engine passes its seeded CPU generator) and then moved to the batch's
device; the bulk random fields (elastic displacement, Gaussian noise) are drawn directly on the
batch's device from a generator seeded from ``generator``. So a seed reproduces the augmentation
exactly on a given device (CPU and CUDA random streams differ, so the fields differ across devices). Masks
(uint8 or float, same spatial size) go through the same spatial transform with nearest
interpolation, so label values are preserved and the mask stays aligned with the image;
intensity transforms touch the image only.

What comes from libraries and what is hand-written, and why:

* kornia (batched, any device) supplies the pieces that take explicit per-sample parameters:
  rotation matrices (``angle_to_rotation_matrix``, ``axis_angle_to_rotation_matrix`` for 3D) and the intensity
  operations (``adjust_gamma``, ``adjust_contrast_with_mean_subtraction``, ``adjust_brightness``).
* Hand-written: the geometric composition. All geometric transforms of a sample (flip,
  rotation, scale, shift, crop, elastic displacement) are folded into ONE sampling grid
  (``F.affine_grid`` + displacement field) and ONE ``F.grid_sample`` for image and mask, in 2D and
  3D alike. Reasons: (1) ``kornia.augmentation`` draws its random parameters from torch's global
  RNG and takes no ``torch.Generator``, so seeded, engine-controlled reproducibility would need
  global-state juggling (kornia 0.9 documents that ``generator=`` is not supported); (2) kornia has elastic deformation for 2D only (``elastic_transform2d``,
  ``RandomElasticTransform``) — there is no 3D elastic transform; (3) one resampling instead of
  one per transform avoids compounding interpolation blur and is faster.
* The elastic field is hand-written for 2D and 3D alike (kornia has no 3D one); α is rescaled in 3D so
  the RMS displacement equals the 2D one for the same σ (smoothing a 3D field shrinks it more).
  The smoothing is done in the Fourier domain (periodic border): the Simard kernel is as wide as a
  28-px image, so a spatial convolution is several times slower, in 3D especially.
* :func:`torchvision_policy` builds the equivalent per-sample ``torchvision.transforms.v2``
  pipeline (2D, joint image + ``tv_tensors.Mask``) for teaching and for a speed comparison.

Offline augmentation (:func:`offline`, :func:`offline_splits`) enlarges a training set
beforehand by ``copies`` transformed versions of every image; online augmentation is the
``augment=`` argument of :func:`mednb.engine.fit` (a fresh transform per mini-batch). The
experiment helpers (:func:`label_fraction_grid`, :func:`compare_offline_online`,
:func:`imbalance_experiment`, :func:`throughput`, :func:`verdict`) back notebook 02.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- policies
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
    from .runtime import check_name
    return check_name(name, POLICIES, "augmentation policy")


def _gaussian_transfer(sigma: float, spatial, device=None, full: bool = False) -> torch.Tensor:
    """Fourier transfer function of a Gaussian of ``sigma`` px on a periodic grid ``spatial``
    (last axis halved as in ``rfftn`` unless ``full``)."""
    d, H = len(spatial), torch.ones((), device=device)
    for i, L in enumerate(spatial):
        f = torch.fft.rfftfreq(L, device=device) if (i == d - 1 and not full) else torch.fft.fftfreq(L, device=device)
        shape = [1] * d
        shape[i] = -1
        H = H * torch.exp(-2 * math.pi ** 2 * sigma ** 2 * f ** 2).view(shape)
    return H


def _gaussian_smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of (N,K,*spatial) over every spatial axis, via the FFT (periodic border).

    An FFT is used instead of a convolution because the Simard kernel (σ = 4 px, ±3σ) is as wide
    as a 28-px image: a 3D convolution would cost ~25 taps per voxel per axis, the FFT ~log N.
    """
    spatial = field.shape[2:]
    dims = tuple(range(2, field.ndim))
    H = _gaussian_transfer(sigma, spatial, field.device).to(field.dtype)
    return torch.fft.irfftn(torch.fft.rfftn(field, dim=dims) * H, s=spatial, dim=dims)


def _smooth_gain(sigma: float, spatial) -> float:
    """RMS of a Gaussian-smoothed white field relative to the unsmoothed one (Parseval)."""
    return float(_gaussian_transfer(sigma, spatial, full=True).pow(2).mean().sqrt())


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

    # -- parameters ------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> dict:
        """Per-sample parameters for a batch of ``n`` (CPU tensors)."""
        g, s, c, d = generator, float(self.strength), self.c, self.dims
        u = lambda *shape: torch.rand(*shape, generator=g) * 2 - 1  # U(-1, 1)
        p: dict = {}
        if self.flip:
            p["flip"] = torch.rand(n, generator=g) < c["flip_p"] * min(s, 1.0)
        if self.affine:
            if d == 2:
                p["angle"] = u(n) * c["rotate_deg"] * s
            else:
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
        d = self.dims
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

    def displacement(self, p: dict, n: int, spatial, device, dtype=torch.float32) -> torch.Tensor:
        """Elastic displacement (N, *spatial, d) in normalized grid units (Simard et al. 2003)."""
        d, c = self.dims, self.c
        size = min(spatial)
        sigma = c["elastic_sigma"] * size / 28
        alpha = c["elastic_alpha"] * float(self.strength) * size / 28
        if d == 3:  # same RMS displacement as the 2D field with this σ (smoothing shrinks 3D fields more)
            alpha = alpha * _smooth_gain(sigma, (size, size)) / _smooth_gain(sigma, (size,) * 3)
        g = torch.Generator(device=device).manual_seed(p["seed"])
        field = torch.rand(n, d, *spatial, generator=g, device=device, dtype=dtype) * 2 - 1
        field = _gaussian_smooth(field, sigma) * alpha  # in px
        # channel k of the grid is the k-th coordinate (x, y[, z]) = spatial axes reversed
        px_to_norm = torch.tensor([2.0 / s for s in reversed(spatial)], device=device, dtype=dtype)
        return field.movedim(1, -1) * px_to_norm

    # -- application -----------------------------------------------------------------------
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
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            if self.elastic:
                grid = grid + self.displacement(p, n, spatial, dev, x.dtype)
            pad = self.c["padding"]
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=False)
            if masks is not None:
                m = F.grid_sample(masks.to(x.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
                masks = m.round().to(masks.dtype) if not masks.is_floating_point() else m
        if self.intensity and n:
            from kornia.enhance import adjust_brightness, adjust_contrast_with_mean_subtraction, adjust_gamma
            x = adjust_gamma(x.clamp(0, 1), p["gamma"].to(dev, x.dtype))
            x = adjust_contrast_with_mean_subtraction(x, p["contrast"].to(dev, x.dtype))
            x = adjust_brightness(x, p["brightness"].to(dev, x.dtype))
        if self.noise and n:
            g = torch.Generator(device=dev).manual_seed(int(p["noise_seed"]))
            eps = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
            x = (x + eps * p["noise_sd"].to(dev, x.dtype).view(n, *([1] * (x.ndim - 1)))).clamp(0, 1)
        return x, masks

    def __call__(self, x: torch.Tensor, masks: torch.Tensor | None = None,
                 generator: torch.Generator | None = None):
        if generator is None:  # follow the global seed (mednb.seed_everything)
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return self.apply(x, masks, self.sample(len(x), generator))


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
    key = str(name).lower()
    if key not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; valid: {', '.join(TRANSFORMS)}")
    policy, zero = TRANSFORMS[key]
    return dataclasses.replace(get(policy, strength, dims, **zero), name=key)


def _named(name: str, strength: float, dims: int) -> Policy:
    """A policy (:func:`names`) or, failing that, a single transform (:func:`transforms`)."""
    key = str(name).lower()
    if key in POLICIES:
        return get(key, strength, dims)
    if key in TRANSFORMS:
        return transform(key, strength, dims)
    raise ValueError(f"unknown augmentation {name!r}; valid policies: {', '.join(POLICIES)}; "
                     f"single transforms: {', '.join(TRANSFORMS)}")


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


def torchvision_policy(name: str, strength: float = 1.0, size: int = 28):
    """The per-sample ``torchvision.transforms.v2`` equivalent of a 2D policy (for teaching).

    Works on one (C,H,W) image, or jointly on ``(tv_tensors.Image, tv_tensors.Mask)``: v2 moves
    the mask with the image and uses nearest interpolation for it. ``size``: the image size (the
    crop is resized back to it). Random numbers come from
    torch's global RNG (seed with ``torch.manual_seed``).
    """
    from torchvision.transforms import v2
    key, s, c = _check(name), float(strength), DEFAULTS
    comp = POLICIES[key]
    t = []
    if comp.get("flip"):
        t.append(v2.RandomHorizontalFlip(p=c["flip_p"] * min(s, 1.0)))
    if comp.get("affine"):
        t.append(v2.RandomAffine(degrees=c["rotate_deg"] * s, translate=(c["shift"] * s,) * 2,
                                 scale=(1 - c["scale"] * s, 1 + c["scale"] * s), interpolation=v2.InterpolationMode.BILINEAR))
    if comp.get("crop"):
        lo = 1 / (1 + c["crop_zoom"] * s) ** 2
        t.append(v2.RandomResizedCrop(size, scale=(lo, 1.0), ratio=(1.0, 1.0), antialias=True))
    if comp.get("elastic"):
        t.append(v2.ElasticTransform(alpha=c["elastic_alpha"] * s, sigma=c["elastic_sigma"]))
    if comp.get("intensity"):
        t.append(v2.ColorJitter(brightness=c["brightness"] * s, contrast=c["contrast"] * s))
    if comp.get("noise"):
        t.append(v2.GaussianNoise(sigma=c["noise_sd"] * s))
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), *t]) if t else v2.Identity()


# ----------------------------------------------------------------------------- offline vs online
def offline(split, policy: Policy, copies: int, seed: int = 0, batch_size: int = 256, device="cpu"):
    """Offline augmentation: the split plus ``copies`` transformed versions of every sample.

    Returns a :class:`mednb.data.Split` of ``(copies + 1) · N`` uint8 samples (originals first),
    labels repeated, masks transformed with their images.
    """
    from .data import Split
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies!r}")
    g = torch.Generator().manual_seed(int(seed))
    xs, ms = [split.x], [split.masks]
    for _ in range(int(copies)):
        for i in range(0, len(split), batch_size):
            xb = split.x[i:i + batch_size].to(device).float().div_(255)
            mb = None if split.masks is None else split.masks[i:i + batch_size].to(device)
            xa, ma = policy(xb, mb, g)
            xs.append(xa.mul_(255).round_().clamp_(0, 255).to(torch.uint8).cpu())
            ms.append(None if ma is None else ma.cpu())
    x = torch.cat(xs)
    y = split.y.repeat(int(copies) + 1, 1)
    masks = None if split.masks is None else torch.cat(ms)
    return Split(x, y, masks)


def offline_splits(splits, policy: Policy, copies: int, label_fraction: float = 1.0, seed: int = 0):
    """``splits`` whose train split is the (stratified, seeded) label subset enlarged offline."""
    from .data import label_subset
    idx = label_subset(splits.train.y, label_fraction, seed, splits.task)
    train = offline(splits.train.subset(idx), policy, copies, seed)
    return dataclasses.replace(splits, train=train, meta={**splits.meta, "offline_copies": copies})


def nbytes(split) -> int:
    """Bytes held by a split's tensors (images, labels, masks)."""
    return sum(t.numel() * t.element_size() for t in (split.x, split.y, split.masks) if t is not None)


# ----------------------------------------------------------------------------- class imbalance
def imbalanced_indices(y: torch.Tensor, ratio: float, seed: int = 0, minority: int | None = None) -> torch.Tensor:
    """Indices of a subset where class ``minority`` (default: the rarest) has ``ratio`` × the
    samples of the largest class (0 < ratio ≤ 1; other classes kept whole). y: (N,L) labels."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    lab = y[:, 0]
    counts = torch.bincount(lab)
    minority = int(torch.argmin(torch.where(counts > 0, counts, counts.max() + 1))) if minority is None else minority
    keep = max(1, int(round(ratio * int(counts.max()))))
    g = torch.Generator().manual_seed(int(seed))
    idx_min = torch.nonzero(lab == minority).flatten()
    idx_min = idx_min[torch.randperm(len(idx_min), generator=g)[:keep]]
    return torch.sort(torch.cat([torch.nonzero(lab != minority).flatten(), idx_min])).values


#: imbalance strategies -> engine.fit keywords
IMBALANCE_STRATEGIES = {
    "nothing": dict(),
    "weighted loss": dict(class_weight="balanced"),
    "oversample": dict(sampler="balanced"),
    "oversample + augment": dict(sampler="balanced", augment="basic"),
}


# ----------------------------------------------------------------------------- experiments
def _tqdm(it, total, desc, progress):
    from tqdm.auto import tqdm
    return tqdm(it, total=total, desc=desc, disable=not progress, leave=True)


def label_fraction_grid(splits, policies, fractions, seeds, *, model: str = "cnn", strength: float = 1.0,
                        progress: bool = True, **fit_kw):
    """Test metrics for every (policy, label fraction, seed): a tidy DataFrame, one row per run
    (with ``train_images_per_s``: training speed including the online augmentation).

    fit_kw go to :func:`mednb.engine.train` (epochs, lr, batch_size, device, …).
    """
    import itertools
    import pandas as pd
    from . import engine
    runs = list(itertools.product(policies, fractions, seeds))
    rows = []
    for pol, frac, seed in _tqdm(runs, len(runs), f"{splits.name}: policy × fraction × seed", progress):
        aug = get(pol, strength, dims=splits.dims)
        res = engine.train(splits, model, seed=seed, augment=aug, label_fraction=frac, progress=False, **fit_kw)
        rows.append(dict(dataset=splits.name, policy=pol, label_fraction=frac, seed=seed, n_train=res.n_train,
                         test_auc=res.test["auc"], test_acc=res.test["acc"],
                         test_balanced_acc=res.test["balanced_acc"], seconds=res.seconds,
                         train_images_per_s=res.images_per_s))
    return pd.DataFrame(rows)


def compare_offline_online(splits, policy: str = "basic", copies: int = 4, seeds=(0,), *, epochs: int = 10,
                           label_fraction: float = 1.0, model: str = "cnn", strength: float = 1.0,
                           progress: bool = True, **fit_kw):
    """Offline (train set enlarged ×(copies+1) beforehand) vs online (per mini-batch) vs none.

    Same number of images seen per run: online and none train ``epochs`` epochs over N images,
    offline ``max(1, round(epochs / (copies + 1)))`` epochs over (copies + 1)·N. Returns one row per
    (mode, seed): train-set bytes, preparation and training seconds, test AUC/ACC.
    """
    import pandas as pd
    from . import engine
    from .data import label_subset
    aug = get(policy, strength, dims=splits.dims)
    rows = []
    runs = [(m, s) for s in seeds for m in ("none", "online", "offline")]
    for mode, seed in _tqdm(runs, len(runs), f"{splits.name}: offline vs online", progress):
        t0 = time.perf_counter()
        if mode == "offline":
            sp, ep, a, frac = offline_splits(splits, aug, copies, label_fraction, seed), \
                max(1, round(epochs / (copies + 1))), None, 1.0
        else:
            sp, ep, a, frac = splits, epochs, (aug if mode == "online" else None), label_fraction
        prep = time.perf_counter() - t0
        train_bytes = nbytes(sp.train) if mode == "offline" else nbytes(
            splits.train.subset(label_subset(splits.train.y, label_fraction, seed, splits.task)))
        res = engine.train(sp, model, seed=seed, augment=a, epochs=ep, label_fraction=frac, progress=False, **fit_kw)
        rows.append(dict(dataset=splits.name, mode=mode, policy=policy if mode != "none" else "none", seed=seed,
                         n_train=res.n_train, epochs=ep, images_seen=res.n_train * len(res.history),
                         train_bytes=train_bytes, prep_s=prep, train_s=res.seconds,
                         test_auc=res.test["auc"], test_acc=res.test["acc"]))
    return pd.DataFrame(rows)


def imbalance_experiment(splits, ratio: float = 0.1, seeds=(0,), strategies=tuple(IMBALANCE_STRATEGIES), *,
                         model: str = "cnn", minority: int | None = None, progress: bool = True, **fit_kw):
    """Class imbalance: train on a subset where the minority class has ``ratio`` × the majority's
    samples, with each strategy of :data:`IMBALANCE_STRATEGIES`; test AUC and balanced accuracy
    on the untouched test split. One row per (strategy, seed)."""
    import pandas as pd
    from . import engine
    for s in strategies:
        if s not in IMBALANCE_STRATEGIES:
            raise ValueError(f"unknown imbalance strategy {s!r}; valid: {', '.join(IMBALANCE_STRATEGIES)}")
    rows = []
    runs = [(st, s) for s in seeds for st in strategies]
    for strat, seed in _tqdm(runs, len(runs), f"{splits.name}: imbalance", progress):
        idx = imbalanced_indices(splits.train.y, ratio, seed, minority)
        kw = dict(IMBALANCE_STRATEGIES[strat])
        if "augment" in kw:
            kw["augment"] = get(kw["augment"], dims=splits.dims)
        res = engine.train(splits, model, seed=seed, train_idx=idx, progress=False, **kw, **fit_kw)
        counts = torch.bincount(splits.train.y[idx, 0], minlength=splits.n_classes).tolist()
        rows.append(dict(dataset=splits.name, strategy=strat, seed=seed, train_counts=str(counts),
                         test_auc=res.test["auc"], test_balanced_acc=res.test["balanced_acc"],
                         test_acc=res.test["acc"]))
    return pd.DataFrame(rows)


def throughput(policy, x: torch.Tensor, device="cpu", repeats: int = 3, masks: torch.Tensor | None = None) -> float:
    """Images (or volumes) per second of ``policy`` on batch ``x`` (uint8 or float) on ``device``.

    ``policy``: a :class:`Policy` (batched) or a per-sample callable such as
    :func:`torchvision_policy` (then applied in a Python loop, one sample at a time).
    The best of ``repeats`` timed runs after one warm-up run.
    """
    from .runtime import get_device
    dev = get_device(device)
    xb = x.to(dev)
    xb = xb.float().div(255) if xb.dtype == torch.uint8 else xb
    mb = None if masks is None else masks.to(dev)
    g = torch.Generator().manual_seed(0)
    batched = isinstance(policy, Policy)
    xs = xb if batched else x  # per-sample pipelines take uint8 images (they convert themselves)

    def once():
        if batched:
            policy(xs, mb, g)
        else:
            for i in range(len(xs)):
                policy(xs[i])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    once()
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def verdict(df, metric: str = "test_auc", baseline: str = "none"):
    """Per (dataset, label fraction): the winning policy, its mean metric and the gain over
    ``baseline`` (mean over seeds), with the seed sd of both — computed from a grid DataFrame."""
    import pandas as pd
    rows = []
    for (ds, frac), g in df.groupby(["dataset", "label_fraction"]):
        stats = g.groupby("policy")[metric].agg(["mean", "std", "count"])
        best = stats["mean"].idxmax()
        base = stats.loc[baseline] if baseline in stats.index else None
        sd = lambda v: 0.0 if (v is None or not np.isfinite(v)) else float(v)
        rows.append(dict(dataset=ds, label_fraction=frac, best_policy=best, best_mean=stats.loc[best, "mean"],
                         best_sd=sd(stats.loc[best, "std"]),
                         baseline_mean=None if base is None else base["mean"],
                         gain_over_baseline=None if base is None else stats.loc[best, "mean"] - base["mean"],
                         gain_exceeds_sd=None if base is None or stats["count"].min() < 2 else bool(
                             stats.loc[best, "mean"] - base["mean"] > max(sd(stats.loc[best, "std"]), sd(base["std"]))),
                         n_seeds=int(stats["count"].min())))
    return pd.DataFrame(rows)


def summary(df, by, metrics=("test_auc",), digits: int = 3):
    """``mean ± sd (n)`` of wide result columns ``metrics`` per group ``by`` (via :func:`mednb.metrics.summarize`)."""
    from . import metrics as M
    by = [by] if isinstance(by, str) else list(by)
    long = df.melt(id_vars=by, value_vars=list(metrics), var_name="metric", value_name="value")
    out = M.summarize(long.to_dict("records"), by, metrics, digits)
    return out[[c for c in out.columns if not c.endswith("_mean")]]


def describe_verdict(v) -> str:
    """Plain-language lines from :func:`verdict` (one per dataset and label fraction)."""
    lines = []
    for r in v.itertuples():
        if r.best_policy == "none" or r.gain_over_baseline is None or not np.isfinite(r.gain_over_baseline):
            lines.append(f"{r.dataset}, {r.label_fraction:.0%} labels: no policy beat 'none' "
                         f"(best {r.best_policy}, AUC {r.best_mean:.3f}).")
        else:
            note = ("one seed — no sd, not conclusive" if r.n_seeds < 2 else
                    "larger than the seed sd" if r.gain_exceeds_sd else "within the seed sd — not a clear win")
            lines.append(f"{r.dataset}, {r.label_fraction:.0%} labels: {r.best_policy} wins, AUC {r.best_mean:.3f} "
                         f"vs {r.baseline_mean:.3f} without augmentation ({r.gain_over_baseline:+.3f}, {note}).")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures and widgets
def gallery(x: torch.Tensor, policies=None, n: int = 6, strength: float = 1.0, masks: torch.Tensor | None = None,
            seed: int = 0, size: float = 1.25, title: str | None = None):
    """Rows: policies or single transforms (:func:`names`, :func:`transforms`); columns: the original
    then ``n`` augmented draws of ONE sample.

    x: (C,H,W) or (C,D,H,W) uint8 or float [0,1] (volumes show their middle axial slice); masks:
    the sample's mask, drawn as a red contour after the same transform.
    """
    import matplotlib.pyplot as plt
    from .plot import to_display
    policies = list(policies or names())
    dims = x.ndim - 1
    xf = (x.float() / 255 if x.dtype == torch.uint8 else x.float()).unsqueeze(0).repeat(n, *([1] * x.ndim))
    mf = None if masks is None else masks.unsqueeze(0).repeat(n, *([1] * masks.ndim))
    pols = [_named(name, strength, dims) for name in policies]  # unknown names fail before any figure
    fig, axes = plt.subplots(len(policies), n + 1, figsize=((n + 1) * size, len(policies) * size * 1.05),
                             squeeze=False)
    for r, (name, pol) in enumerate(zip(policies, pols)):
        y, m = pol(xf, mf, torch.Generator().manual_seed(seed + r))
        for c in range(n + 1):
            ax = axes[r, c]
            img, msk = (xf[0], None if mf is None else mf[0]) if c == 0 else (y[c - 1], None if m is None else m[c - 1])
            ax.imshow(to_display(img), cmap="gray", vmin=0, vmax=1)
            if msk is not None and msk.any():
                ax.contour(to_display(msk.float()), levels=[0.5], colors="r", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title("original" if c == 0 else f"draw {c}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def mask_alignment(x: torch.Tensor, masks: torch.Tensor, policies=GEOMETRIC, strength: float = 1.0,
                   seed: int = 0):
    """Measure that masks stay aligned: Dice between the mask moved as a mask (nearest) and the
    same lesion moved as image content (a float indicator channel, bilinear, thresholded at 0.5),
    and, for contrast, Dice with the untransformed mask. One row per policy (float batches)."""
    import pandas as pd
    rows = []
    xf = x.float() / 255 if x.dtype == torch.uint8 else x
    for name in policies:
        both = torch.cat([xf, masks.float()], dim=1)
        y, mo = get(name, strength, x.ndim - 2)(both, masks, torch.Generator().manual_seed(seed))
        ind = y[:, -1:] > 0.5
        d = lambda a, b: float(2 * (a & b).sum() / (a.sum() + b.sum()).clamp_min(1))
        rows.append(dict(policy=name, dice_moved_mask=d(ind, mo.bool()), dice_unmoved_mask=d(ind, masks.bool())))
    return pd.DataFrame(rows)


def explorer(x: torch.Tensor, masks: torch.Tensor | None = None, policies=None, scale: int = 8):
    """An ipywidgets explorer: policy or single transform + strength + seed → before/after of one
    sample (2D or 3D).

    x: (C,H,W) or (C,D,H,W) (volumes show their middle axial slice); masks: the sample's mask,
    tinted red. Renders with :func:`mednb.widgets.png`. Builds and returns the widget (display it);
    never waits for input, so papermill/nbval run on.
    """
    import ipywidgets as W
    from .plot import to_display
    from .widgets import png
    dims = x.ndim - 1
    xf = (x.float() / 255 if x.dtype == torch.uint8 else x.float()).unsqueeze(0)
    mf = None if masks is None else masks.unsqueeze(0)
    options = list(policies or names() + [t for t in transforms() if t not in POLICIES])
    pol = W.Dropdown(options=options, value="strong" if "strong" in options else options[0],
                     description="augment")
    strength = W.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.25, description="strength")
    seed = W.IntSlider(value=0, min=0, max=20, description="seed")
    before, after, caption = W.Image(format="png"), W.Image(format="png"), W.HTML()
    u8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8)  # fixed 0–255 scale: intensity changes show
    show = lambda img, msk: png(to_display(u8(img)), None if msk is None else to_display(msk) > 0, scale)
    before.value = show(xf[0], None if mf is None else mf[0])

    def draw(*_):
        y, m = _named(pol.value, strength.value, dims)(xf, mf, torch.Generator().manual_seed(seed.value))
        after.value = show(y[0], None if m is None else m[0])
        caption.value = f"before · after <b>{pol.value}</b> at strength {strength.value:g} (seed {seed.value})"

    for w in (pol, strength, seed):
        w.observe(draw, names="value")
    draw()
    return W.VBox([W.HBox([pol, strength, seed]), caption, W.HBox([before, after])])


# ----------------------------------------------------------------------------- notebook profiles
PROFILES = {
    "smoke": dict(DATASET="phantom2d", DATASET_3D="phantom3d", SIZE=28, MODEL="cnn", MODEL_3D="cnn",
                  EPOCHS=3, EPOCHS_3D=2, BATCH_SIZE=64, LR=1e-3, SEEDS=[0], SEEDS_3D=[0], OFFLINE_SEEDS=[0],
                  LABEL_FRACTIONS=[0.01, 0.1, 1.0], POLICIES=["none", "basic", "elastic", "strong"],
                  POLICIES_3D=["none", "basic"], STRENGTH=1.0, COUNTS=[240, 80, 200], COUNTS_3D=[32, 16, 32],
                  OFFLINE_COPIES=2, IMBALANCE_RATIO=0.1, THROUGHPUT_N=64, DEVICE="auto"),
    "student": dict(DATASET="breastmnist", DATASET_3D="adrenalmnist3d", SIZE=28, MODEL="cnn", MODEL_3D="cnn",
                    EPOCHS=20, EPOCHS_3D=3, BATCH_SIZE=64, LR=1e-3, SEEDS=[0, 1, 2], SEEDS_3D=[0], OFFLINE_SEEDS=[0],
                    LABEL_FRACTIONS=[0.01, 0.1, 1.0], POLICIES=["none", "basic", "elastic", "strong"],
                    POLICIES_3D=["none", "strong"], STRENGTH=1.0, COUNTS=[1200, 300, 600], COUNTS_3D=[400, 100, 200],
                    OFFLINE_COPIES=4, IMBALANCE_RATIO=0.1, THROUGHPUT_N=512, DEVICE="auto"),
    "full": dict(DATASET="breastmnist", DATASET_3D="adrenalmnist3d", SIZE=28, MODEL="resnet18", MODEL_3D="resnet18_3d",
                 EPOCHS=100, EPOCHS_3D=50, BATCH_SIZE=128, LR=1e-3, SEEDS=[0, 1, 2, 3, 4], SEEDS_3D=[0, 1, 2],
                 OFFLINE_SEEDS=[0, 1, 2], LABEL_FRACTIONS=[0.01, 0.1, 1.0], POLICIES=["none", "basic", "elastic", "strong"],
                 POLICIES_3D=["none", "basic", "elastic", "strong"], STRENGTH=1.0, COUNTS=[1200, 300, 600],
                 COUNTS_3D=[400, 100, 200], OFFLINE_COPIES=4, IMBALANCE_RATIO=0.1, THROUGHPUT_N=2048, DEVICE="auto"),
}
