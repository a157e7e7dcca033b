"""ADRA: theta0 frozen, parallel 1x1 residual adapters learned with outlier exposure (paper Sec. 4.4)."""

from __future__ import annotations

from .base import Recipe, TransferDetector


class ADRADetector(TransferDetector):
    """Anomaly Detection with Residual Adaptation (Deecke et al., ICML 2021).

    Keeps every 3x3 convolution of theta0 fixed and learns a parallel 1x1 adapter beside each
    (``y = conv3x3_theta0(x) + V x``, before the BatchNorm), together with the BatchNorm layers and
    a fresh head, with the outlier-exposure cross-entropy and no regularizer. At width 64 that is
    about 0.65 M trainable parameters, 11% of the convolutions'. Adapters start at zero, so training
    starts from exactly theta0's function.

    The parameters are :class:`ADIBDetector`'s without ``alpha``/``regularizer``/``ewc_lambda``;
    ``backbone`` must be a :class:`~skad_transfer.nn.Backbone` (a name such as ``"resnet26"`` or
    ``"resnet50"``, or an instance): on torchvision's ResNets the adapters sit beside every 3x3 conv
    of the BasicBlocks and Bottlenecks, and every pretrained conv (7x7 stem and 1x1s included) stays
    frozen. It is the member ``loss="bce", regularizer=None, adapters=True`` of
    :class:`~skad_transfer.DeepADDetector`.

    Parameters
    ----------
    backbone : str or Backbone, default="resnet26"
        A :class:`~skad_transfer.nn.Backbone`: a name such as ``"resnet26"`` or ``"resnet50"``, or
        an instance (a plain module has no 3x3 convolutions to adapt).
    width, input_size, weights, outlier_exposure, steps, epochs, batch_size, lr, momentum, weight_decay, \
contamination, image_shape, device, precision, compile, checkpoint, validation_fraction, early_stopping, \
n_iter_no_change, warm_start, jpeg_quality, match_outlier_exposure, match_histograms, anomaly_score, \
random_state, verbose
        As for :class:`ADIBDetector`.

    Attributes
    ----------
    network_ : Backbone
        theta0 with trained adapters, BatchNorm and head, in eval mode.
    n_trainable_parameters_ : int
        Parameters that were trained.

    The other fitted attributes are :class:`ADIBDetector`'s.

    Examples
    --------
    >>> import numpy as np
    >>> from skad_transfer import ADRADetector
    >>> rng = np.random.default_rng(0)
    >>> X_normal = rng.integers(0, 100, (64, 32, 32, 3), dtype=np.uint8)
    >>> X_outlier = rng.integers(100, 256, (64, 32, 32, 3), dtype=np.uint8)
    >>> det = ADRADetector(weights=None, width=4, epochs=1, device="cpu", random_state=0).fit(X_normal, X_outlier)
    >>> det.score_samples(X_normal[:3]).shape
    (3,)
    """

    def _recipe(self) -> Recipe:
        return Recipe(loss="bce", regularizer=None, adapters=True)
