"""cmr-node: a DICOM node that analyses cardiac MR and returns SEG, SR and a summary image."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cmr-node")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
