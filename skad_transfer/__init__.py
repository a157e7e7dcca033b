"""skad-transfer: transfer-based semantic anomaly detection (Deecke et al., ICML 2021) for scikit-learn."""

from ._version import __version__
from .data.corpora import OutlierCorpus, list_corpora, register_corpus
from .detectors import (ADIBDetector, ADRADetector, DeepADDetector, DOCDetector, DSVDDDetector, HSCDetector,
                        KNNDetector, LabelsIgnoredWarning)
from .export import export_onnx
from .features import LayerFeatures
from .nn import ResNet26, resnet26
from .scoring import OutlierExposureWarning
from .weights import WeightsRecord, list_weights, register_weights


__all__ = [
    "ADIBDetector", "ADRADetector", "DeepADDetector", "DSVDDDetector", "HSCDetector", "DOCDetector", "KNNDetector",
    "LayerFeatures", "ResNet26", "resnet26", "WeightsRecord", "list_weights",
    "register_weights", "OutlierCorpus", "list_corpora", "register_corpus", "export_onnx", "OutlierExposureWarning",
    "LabelsIgnoredWarning",
    "__version__",
]
