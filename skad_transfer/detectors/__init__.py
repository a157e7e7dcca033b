"""scikit-learn outlier detectors built on the training engine."""

from .adib import ADIBDetector
from .adra import ADRADetector
from .base import TransferDetector

__all__ = ["ADIBDetector", "ADRADetector", "TransferDetector"]
