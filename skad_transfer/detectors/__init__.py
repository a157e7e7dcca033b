"""scikit-learn outlier detectors built on the training engine, and the baselines."""

from .adib import ADIBDetector
from .adra import ADRADetector
from .base import TransferDetector
from .baselines import DOCDetector, DSVDDDetector, HSCDetector, KNNDetector
from .family import DeepADDetector
from .labels import LabelsIgnoredWarning

__all__ = ["ADIBDetector", "ADRADetector", "DeepADDetector", "DSVDDDetector", "HSCDetector", "DOCDetector",
           "KNNDetector", "TransferDetector", "LabelsIgnoredWarning"]
