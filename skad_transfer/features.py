"""Features of a theta0 (or of a fitted detector's network) at a named layer, as a scikit-learn transformer.

The paper's probes (Table 1: an OC-SVM on conv features) and its kNN baseline are pipelines:

    make_pipeline(LayerFeatures(layer="stage3"), StandardScaler(), OneClassSVM())
    make_pipeline(LayerFeatures(), KNNDetector())
"""

from __future__ import annotations

import copy
import os
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .data.images import validate_images
from .device import PRECISIONS, resolve_device
from .inference import apply_batched
from .nn import BACKBONES, Backbone, build_backbone, load_backbone_state
from .persistence import PortableNetworkMixin
from .weights import CIFAR_MEAN, CIFAR_STD, WeightsRecord, resolve_weights

POOLINGS = ("avg", "max", "none")
#: Every feature tap some backbone has (each backbone's own are its ``feature_layers``).
LAYERS = tuple(sorted({layer for cls in set(BACKBONES.values()) for layer in cls.feature_layers}))


class LayerFeatures(PortableNetworkMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Features of a backbone (ResNet26 or a torchvision ResNet) at a named layer, for probes and
    feature-based detectors.

    ``fit`` builds the network (theta0, or the network of a fitted detector) and ``transform`` runs
    it over images in padded batches on the device, so a row's features are bitwise the same
    whatever else is in the batch. Inputs are those the detectors accept.

    Parameters
    ----------
    backbone : str, Backbone or fitted detector, default="resnet26"
        A name (:data:`skad_transfer.nn.BACKBONES`: ``"resnet26"``, the paper's network, or a
        torchvision ResNet such as ``"resnet50"``) builds that network with ``weights``; a
        :class:`~skad_transfer.nn.Backbone` instance is deep-copied (and loaded with ``weights``
        unless None). A fitted detector (anything with ``network_``, ``mean_``, ``std_`` and
        ``input_size_``, e.g. a fitted :class:`~skad_transfer.ADIBDetector`) lends its trained
        network and preprocessing; ``weights`` and ``width`` are then ignored. ``clone`` (hence
        ``GridSearchCV`` and ``cross_val_score``) unfits estimators nested as parameters: wrap a
        fitted detector in :class:`sklearn.frozen.FrozenEstimator` there.
    weights : None, str, path-like or WeightsRecord, default="default"
        theta0, as for the detectors (for a torchvision backbone ``"default"`` is torchvision's
        ``DEFAULT`` ImageNet weights); ``None`` is a random initialisation (seeded by ``random_state``).
    layer : {"stem", "stage1", "stage2", "stage3", "stage4", "pooled"}, default="pooled"
        Where to read the features (the backbone's ``feature_layers``): the stem, the end of each
        stage (ResNet26 has three, ``stage3`` taken after its final BatchNorm-ReLU; torchvision's
        ResNets four) or the global average of the last one (the head's input).
    pooling : {"avg", "max", "none"}, default="avg"
        How a feature map (N, C, H, W) becomes a vector: global average or max over H and W (N, C),
        or ``"none"`` to flatten it (N, C*H*W). ``"pooled"`` is already a vector: only ``"avg"`` and
        ``"none"`` (both leave it as is) are accepted there.
    batch_size : int, optional
        Images per forward pass; default 256 on CUDA, 64 on the CPU.
    device : str or torch.device, default="auto"
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        As for the detectors; features are returned as float32 either way.
    image_shape : tuple (C, H, W), optional
        How to read flattened rows.
    width : int, optional
        ResNet26 width when ``weights=None``.
    random_state : int, RandomState or None, default=None
        Seeds the random initialisation when ``weights=None``.
    verbose : bool, default=False
        A progress bar over the batches of ``transform`` once it has run for 5 seconds.

    Attributes
    ----------
    network_ : torch.nn.Module
        The feature network, in eval mode, on ``device_``.
    weights_ : WeightsRecord or None
        The resolved theta0 (None for a detector backbone or random init).
    input_size_, mean_, std_ : int, tuple, tuple
        Preprocessing: images are resized to ``input_size_`` and normalised with ``mean_``/``std_``.
    jpeg_quality_ : int or None
        A fitted detector backbone's ``jpeg_quality_`` (its images' JPEG round trip, repeated here so
        that the features are those the detector computes); None otherwise.
    n_features_out_ : int
        Length of a feature vector.
    image_shape_, n_features_in_, feature_names_in_, device_
        As for the detectors.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.svm import OneClassSVM
    >>> from skad_transfer import LayerFeatures
    >>> X = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    >>> LayerFeatures(weights=None, width=4, layer="stage2", device="cpu").fit_transform(X).shape
    (20, 8)
    >>> probe = make_pipeline(LayerFeatures(weights=None, width=4, layer="stage3", device="cpu"),
    ...                       StandardScaler(), OneClassSVM())
    >>> probe.fit(X).score_samples(X).shape
    (20,)
    """

    _parameter_constraints = {
        "backbone": "no_validation",  # a name, a module or a fitted detector: checked in fit
        "weights": [str, os.PathLike, WeightsRecord, None],
        "layer": [StrOptions(set(LAYERS))],
        "pooling": [StrOptions(set(POOLINGS))],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "image_shape": [tuple, list, None],
        "width": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, backbone="resnet26", *, weights="default", layer="pooled", pooling="avg", batch_size=None,
                 device="auto", precision="auto", image_shape=None, width=None, random_state=None, verbose=False):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.image_shape = image_shape
        self.width = width
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the feature network; ``X`` only fixes the accepted input shape.

        Parameters
        ----------
        X : array-like or tensor of images
            (N, H, W, C), (N, C, H, W), (N, H, W) or flattened (N, C*H*W); uint8 0..255 or float 0..1.
        y : ignored

        Returns
        -------
        self : object
        """
        if self.layer == "pooled" and self.pooling == "max":
            raise ValueError("pooling='max' does not apply to layer='pooled', which is already the global "
                             "average of stage3; use layer='stage3', pooling='max'")
        validate_images(self, X, reset=True)
        device = resolve_device(self.device)
        network, record = self._build_network()
        if self.layer not in network.feature_layers:
            raise ValueError(f"layer={self.layer!r} is not a feature tap of {type(network).__name__}; its taps are "
                             f"{network.feature_layers}")
        self.weights_ = record
        self.network_ = network.to(device).eval()
        self.device_ = device
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.input_size_, self.input_size_, device=device)
            self.n_features_out_ = int(self._features(probe).shape[1])
        return self

    def _build_network(self) -> tuple[nn.Module, WeightsRecord | None]:
        backbone = self.backbone
        if isinstance(backbone, str):
            if backbone not in BACKBONES:
                raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, a Backbone or a fitted detector, "
                                 f"got {backbone!r}")
            record = resolve_weights(self.weights, arch=backbone)
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            # A generator of its own: torch's global one is shared by every thread of the process.
            network = build_backbone(backbone, width=self.width, record=record,
                                     generator=torch.Generator().manual_seed(seed))
            self._set_preprocessing(network.input_size, record)
            return network, record
        if isinstance(backbone, nn.Module):
            if not isinstance(backbone, Backbone):
                raise TypeError(f"backbone: a module backbone must be a skad_transfer Backbone (ResNet26 or "
                                f"TorchvisionResNet: it needs named feature taps), got {type(backbone).__name__}")
            if self.width is not None:
                raise ValueError("width applies to backbone='resnet26' only, not to a module backbone")
            record = resolve_weights(self.weights, arch=getattr(backbone, "arch", "resnet26"))
            network = copy.deepcopy(backbone).cpu()
            if record is not None:
                load_backbone_state(network, record.load_state_dict(), source=f"weights {record.name!r}")
            self._set_preprocessing(network.input_size, record)
            return network, record
        missing = [name for name in ("network_", "mean_", "std_", "input_size_") if not hasattr(backbone, name)]
        if missing:
            fitted_hint = ""
            if hasattr(backbone, "fit"):
                fitted_hint = (" (an unfitted detector: fit it first; inside GridSearchCV or cross_val_score, "
                               "clone unfits nested estimators, so wrap it in sklearn.frozen.FrozenEstimator)")
            raise TypeError(f"backbone: expected a backbone name, a Backbone or a fitted detector; "
                            f"{type(backbone).__name__} has no {', '.join(missing)}{fitted_hint}")
        if not isinstance(backbone.network_, Backbone):
            raise TypeError(f"backbone: the detector's network must be a skad_transfer Backbone for named feature "
                            f"taps, got "
                            f"{type(backbone.network_).__name__}")
        # A copy: transform must not move the detector's network to another device.
        network = copy.deepcopy(backbone.network_).cpu()
        self.input_size_ = int(backbone.input_size_)
        self.mean_, self.std_ = tuple(backbone.mean_), tuple(backbone.std_)
        # The detector's images made a JPEG round trip before its network saw them; so do these.
        self.jpeg_quality_ = getattr(backbone, "jpeg_quality_", None)
        return network, None

    def _set_preprocessing(self, input_size: int, record: WeightsRecord | None) -> None:
        self.jpeg_quality_ = None
        self.input_size_ = int(input_size)
        self.mean_ = tuple(record.mean) if record is not None else CIFAR_MEAN
        self.std_ = tuple(record.std) if record is not None else CIFAR_STD

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network_.features(x, (self.layer,))[self.layer]
        if out.ndim == 4 and self.pooling == "avg":
            out = out.mean(dim=(2, 3))
        elif out.ndim == 4 and self.pooling == "max":
            out = out.amax(dim=(2, 3))
        return out.reshape(out.shape[0], -1)

    def transform(self, X):
        """Features of each image at ``layer``.

        Parameters
        ----------
        X : array-like or tensor of images, in any form ``fit`` accepts.

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        check_is_fitted(self)
        images = validate_images(self, X, reset=False)
        features = apply_batched(self._features, images, device=self.device_, mean=self.mean_, std=self.std_,
                                 input_size=self.input_size_, batch_size=self.batch_size, precision=self.precision,
                                 jpeg_quality=getattr(self, "jpeg_quality_", None),
                                 progress="LayerFeatures" if getattr(self, "verbose", False) else None)
        return features.numpy()

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "network_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

