"""Placing a training split for the loop: resident on the device as uint8 (the airbench approach), or in
pinned host memory with asynchronous batch copies when it does not fit; and the per-sample PIL/torchvision
``DataLoader`` path of the MedMNIST experiments code, kept for comparison (``loader="reference"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..data import Split
from ..runtime import get_device
from .evaluation import MEAN, STD


@dataclass
class Staged:
    """A split placed for training: on the device, or pinned on the host for streaming."""
    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None
    device: torch.device
    resident: bool

    def __len__(self):
        return len(self.x)

    def batch(self, idx: torch.Tensor):
        if self.resident:
            idx = idx.to(self.x.device)
            return self.x[idx], self.y[idx], None if self.masks is None else self.masks[idx]
        idx = idx.cpu()
        out = [self.x[idx], self.y[idx], None if self.masks is None else self.masks[idx]]
        nb = self.device.type == "cuda"
        return tuple(None if t is None else (t.pin_memory() if nb else t).to(self.device, non_blocking=nb)
                     for t in out)

    def batches(self, order: torch.Tensor, batch_size: int):
        """Yield ``(x, y, masks)`` for consecutive ``batch_size`` slices of ``order``.

        Resident: index slices on the device. Streaming on CUDA: the next batch is gathered on the host
        and copied on a side stream while the current one trains (one batch of lookahead).
        """
        if self.resident:
            order = order.to(self.x.device)  # one copy per epoch, then index slices on the device
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if self.resident or self.device.type != "cuda":
            for c in chunks:
                yield self.batch(c)
            return
        copy_stream = torch.cuda.Stream(self.device)

        def issue(c):
            c = c.cpu()
            host = [None if t is None else t[c].pin_memory() for t in (self.x, self.y, self.masks)]
            with torch.cuda.stream(copy_stream):
                return [None if t is None else t.to(self.device, non_blocking=True) for t in host]

        nxt = issue(chunks[0]) if chunks else None
        for i in range(len(chunks)):
            cur = nxt
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(copy_stream)
            for t in cur:
                if t is not None:
                    t.record_stream(main)
            nxt = issue(chunks[i + 1]) if i + 1 < len(chunks) else None
            yield tuple(cur)


def split_nbytes(split: Split) -> int:
    n = split.x.numel() * split.x.element_size() + split.y.numel() * split.y.element_size()
    if split.masks is not None:
        n += split.masks.numel() * split.masks.element_size()
    return n


def placement(nbytes: int, device: torch.device, headroom: float = 0.5) -> bool:
    """True when ``nbytes`` fits on ``device`` (≤ ``headroom`` × free memory; always on CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= headroom * free


_SAID: set[str] = set()


def stage(split: Split, device: torch.device, resident: bool | None = None, log: Callable | None = print) -> Staged:
    """Put a split on the device when it fits (else pinned host memory), saying which once."""
    device = get_device(device)
    if resident is None:
        resident = placement(split_nbytes(split), device)
    if resident:
        if log and device.type == "cuda" and str(device) not in _SAID:  # once per process and device
            _SAID.add(str(device))
            log(f"[mednb] training data resident on {device} as uint8 ({split_nbytes(split) / 2**20:.0f} MiB)")
        to = lambda t: None if t is None else t.to(device)
        return Staged(to(split.x), to(split.y), to(split.masks), device, True)
    if log:
        log(f"[mednb] {split_nbytes(split) / 2**30:.1f} GiB does not fit in free {device} memory: "
            f"keeping it in pinned host memory and streaming batches asynchronously")
    pin = lambda t: None if t is None else (t.pin_memory() if device.type == "cuda" else t)
    return Staged(pin(split.x), pin(split.y), pin(split.masks), device, False)


# ----------------------------------------------------------------------------- reference loader
class ReferenceDataset(torch.utils.data.Dataset):
    """Per-sample PIL/torchvision pipeline as in the MedMNIST experiments code.

    2D: ``PIL.Image`` → optional ``transform`` (PIL-level augmentation) → ToTensor → Normalize(.5,.5).
    3D: float volume /255 → Normalize(.5,.5) (the experiments use numpy transforms for 3D).
    """

    def __init__(self, split: Split, transform=None):
        import torchvision.transforms as T
        self.x, self.y, self.transform = split.x, split.y, transform
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(mean=[MEAN], std=[STD])])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image
        x = self.x[i]
        if x.ndim == 3:  # (C,H,W) image
            arr = x.numpy()
            img = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
            if self.transform is not None:
                img = self.transform(img)
            t = self.to_tensor(img)
        else:
            t = (x.float() / 255.0 - MEAN) / STD
        return t, self.y[i]
