"""mednb — a Jupyter workbook for annotation-efficient medical-image deep learning on MedMNIST.

The notebooks call into this package: ``data`` (MedMNIST + phantoms), ``models`` (one registry),
``engine`` (device-resident training), ``metrics``, ``record`` (results read back by
``mednb run``) and one module per topic.
"""
from importlib import metadata as _md

from .params import params
from .recording import record
from .runtime import get_device, seed_everything

try:
    __version__ = _md.version("mednb")
except _md.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

__all__ = ["params", "record", "seed_everything", "get_device", "__version__"]
