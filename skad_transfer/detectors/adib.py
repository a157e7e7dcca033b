"""ADIB: fine-tune every parameter with outlier exposure, pulled toward theta0 (paper Sec. 4.3)."""

from __future__ import annotations

from ..regularizers import REGULARIZER_PARAMETER_CONSTRAINTS
from .base import Recipe, TransferDetector

__all__ = ["ADIBDetector"]


class ADIBDetector(TransferDetector):
    """Anomaly Detection with an Inductive Bias (Deecke et al., ICML 2021).

    Fine-tunes a pretrained network (theta0) to tell normal images from an outlier-exposure (OE)
    corpus with binary cross-entropy, plus ``alpha * ||theta - theta0||^2``: the inductive bias that
    keeps the semantic features of the transfer task. With another ``regularizer`` it is the
    corresponding row of the paper's ablation (Table 4: ``None`` is a2, ``"ewc"`` a5).

    Parameters
    ----------
    alpha : float, default=1e-2
        Strength of the pull toward theta0 (the paper's 1e-2, after Li et al. 2018).
    regularizer : {"l2sp", "l2sp-ref", "ewc"} or None, default="l2sp"
        ``"l2sp"`` is the paper's squared distance over every pretrained parameter (convolutions and
        BatchNorm affine parameters; the fresh head is free). ``"l2sp-ref"`` is the authors' code: the
        unsquared distance over the 3x3 convolutions only; its gradient has constant size ``alpha``
        whatever the drift, so it restrains far less. ``"ewc"`` is elastic weight consolidation (the
        paper's ablation a5): ``(ewc_lambda / 2) * sum_i F_i (theta_i - theta0_i)^2`` over the same
        parameters as ``"l2sp"``, with the diagonal Fisher ``F`` estimated at theta0 (see
        :mod:`skad_transfer.regularizers`). ``None`` is plain OE fine-tuning (an ablation).
        The default follows the paper's equation because it is the one that bounds drift.
    ewc_lambda : float, default=400.0
        EWC's Fisher multiplier (the paper's 400, after Kirkpatrick et al. 2017); used by
        ``regularizer="ewc"`` only, which ignores ``alpha``.
    backbone : str or torch.nn.Module, default="resnet26"
        A name from :data:`skad_transfer.nn.BACKBONES`: ``"resnet26"`` (the paper's network) or a
        torchvision ResNet (``"resnet18"``, ``"resnet50"``, ``"wide_resnet50_2"``, ...); or a
        :class:`~skad_transfer.nn.Backbone` instance, or any module mapping (N, 3, S, S) images to
        (N, 1) logits. ``fit`` trains a deep copy and never mutates a module.
    width : int, optional
        ResNet26 width when ``weights=None`` (64 = the paper's network); else the weights' width.
        Only for ``backbone="resnet26"``.
    input_size : int, optional
        Resolution images are resized to; defaults to the weights' input size (224 for
        torchvision's ImageNet weights), else 32 for ResNet26 (which takes 32 or 96) and 224 for a
        torchvision ResNet (which takes any size from 32).
    weights : None, str, path-like or WeightsRecord, default="default"
        theta0. ``"default"`` is the ResNet26 (width 16) pretrained on Tiny-ImageNet-32 that ships
        inside the package (no download), and torchvision's ``DEFAULT`` ImageNet weights for a
        torchvision backbone. ``None`` keeps the backbone's own initial weights as theta0 (the
        random-init ablation). Or a registered name (``skad_transfer.list_weights()``), e.g.
        ``"transferad-resnet26"`` (the authors' ImageNet checkpoint); for a torchvision backbone one
        of torchvision's weight names (``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"``,
        downloaded by torchvision into torch hub's cache); a checkpoint path or a record.
    outlier_exposure : str, path-like, array-like or corpus, optional
        The OE corpus when ``fit`` is not given one: a registered corpus name, a path (``.npy``,
        ``.npz``, an image folder or ``.zip`` of one), an image array or a loader object. Naming it
        here lets ``GridSearchCV`` search over corpora without copying them.
    steps : int, default=1500
        Training length in SGD steps (each ``batch_size`` images); the learning rate drops 10x at
        60% and 80% of them (the paper's epochs 60 and 80 of 100). A step budget gives a small
        normal set as much training as a large one. 1,500 steps take about 7 minutes in float32 on a
        2-core CPU and under a minute on a GPU (``docs/benchmarks.md``).
    epochs : int, optional
        Passes over the normal set instead of ``steps`` (``epochs=100, lr=0.1`` is the paper's
        schedule); when set, ``steps`` is ignored.
    batch_size : int, default=128
        Images per step: half normal, half OE (the paper's 64 + 64). A normal set smaller than
        ``batch_size // 2`` is taken whole at every step (with as many OE images).
    lr : float, default=0.01
        SGD learning rate. The paper uses 0.1 for 100 epochs with an ImageNet theta0; 0.01 is the
        default because short fine-tunes at 0.1 erase a smaller prior within a few hundred steps
        (``docs/design.md``). Pass ``lr=0.1`` for the paper's schedule. Too large a rate makes
        training diverge: ``fit`` then raises :class:`~skad_transfer.training.TrainingDivergedError`
        (a ``FloatingPointError``) rather than return a model that scores NaN.
    momentum : float, default=0.9
    weight_decay : float, default=1e-4
        Applied by SGD to every trainable parameter, as in the paper.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_``. ``"auto"``: the logit's own boundary (anomaly probability 1/2), with the
        logit's shift refitted after training to minimise eq. (1) over normal and OE images (the
        held-out ones with ``validation_fraction``, else the training images and as many corpus
        images): ~0 once training has converged, and a usable boundary after a short fit too. With a
        kNN term in ``anomaly_score`` (the default), which has no boundary of its own, the score at
        which a logistic fit of the same normal vs OE scores gives 1/2. A float:
        that fraction of the held-out normal images (``validation_fraction``) falls below the
        threshold, i.e. the expected false-alarm rate on new normal images; without
        ``validation_fraction``, that fraction of the *training* images, which the network has
        fitted, so that new normal images raise more false alarms than asked for.
    image_shape : tuple (C, H, W), optional
        How to read flattened rows (one entry may be -1); inferred for square images.
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        Autocast dtype for training and scoring. ``"auto"``: bfloat16 on CUDA and on CPUs that
        compute it natively (AVX512-BF16/AMX; several times faster there), float32 elsewhere.
        Parameters, optimizer state and the L2-SP penalty always stay float32.
    compile : bool or {"default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"}, default=False
        Train through ``torch.compile`` (inductor fuses BatchNorm, ReLU and the residual adds
        around the convolutions); True is ``"default"``, a string is ``torch.compile``'s mode.
        ``"reduce-overhead"`` also replays each step's forward and backward as CUDA graphs on a GPU,
        where a step of small images is bound by kernel launches; on the CPU it compiles as
        ``"default"``. It needs a C++ compiler on the CPU (and Triton on CUDA), and compiling costs
        tens of seconds before the first step (seconds once inductor's cache has it), so it can pay
        for long fits only; whether it does depends on the CPU (``docs/benchmarks.md``, "Training
        throughput"). Scores agree with an uncompiled fit up to float rounding, not bitwise. Scoring
        does not compile.
    checkpoint : path-like, optional
        Save the training state here after every epoch (at most every 50 steps, and at the end); a
        fit with the same data and parameters resumes from it after an interruption, with the same
        result as an uninterrupted fit. The file records the fit's seed, so a fit with
        ``random_state=None`` resumes too: run it again with the same data, parameters and path
        (delete the file to start afresh with a new seed). The path is checked before training
        (not a folder, its folder creatable and writable). The file holds tensors and numbers only
        and is read with ``torch.load(weights_only=True)``.
    validation_fraction : float in (0, 1), optional
        Hold out this fraction of the normal images, and as many OE images (at most), drawn with
        the fit's seed; they are not trained on. Every epoch they are scored into ``history_``
        (``val_loss``: the training objective on them, un-augmented, BatchNorm in eval mode;
        ``val_auc``: held-out normal vs held-out OE, ranked by the loss's own score, the logit:
        the kNN term of ``anomaly_score`` is built from the finished fit), and ``contamination``
        takes its threshold from the held-out images. None (default) trains on every image.
    early_stopping : bool, default=False
        With ``validation_fraction``: stop once ``val_loss`` has not improved (by more than 1e-4)
        for ``n_iter_no_change`` epochs, and keep the weights of the best epoch (``best_epoch_``).
    n_iter_no_change : int, default=5
        Epochs without improvement that stop training under ``early_stopping``.
    warm_start : bool, default=False
        When fitted already, the next ``fit`` continues training from the fitted weights (another
        ``steps``/``epochs``, with a fresh optimizer and schedule) instead of from theta0, which
        stays the regularizer's anchor; ``history_`` and ``n_iter_`` run on. The network must be
        the same (backbone, width, adapters).
    jpeg_quality : int in 1..100 or None, default=75
        Every image the network sees, normal, outlier exposure and scored alike, first makes one JPEG
        round trip at this quality (:mod:`skad_transfer.data.harmonize`). This erases the low-level
        signature of the pipelines that made the normal data and the OE corpus (compression,
        resampling), which a normal-vs-OE classifier otherwise learns instead of the images' content
        (what it is worth: ``docs/design.md``, "Training defaults").
        Float images must lie in [0, 1]. ``None`` feeds the images as they are.
    match_outlier_exposure : bool, default=True
        Bring the OE images to the normal images' own resolution (when those are smaller) and channel
        count (luma for grayscale normal data) before both take the same path
        (:func:`~skad_transfer.data.harmonize.like_source`): otherwise blur or colour alone tells
        normal from OE (measured: ``docs/design.md``). Images of the OE corpus's own size and
        channels (CIFAR-10 with Tiny-ImageNet-32, both 32x32 RGB) are left as they are.
    match_histograms : "auto" or bool, default="auto"
        Give every OE image the luminance histogram of a normal training image, keeping its colour
        (:func:`~skad_transfer.data.harmonize.match_luminance`; each OE item is paired with one
        normal image, fixed by ``random_state``). The OE images keep their content and take the
        normal data's brightness, contrast, background level and grey levels, so that a classifier
        cannot tell normal from OE by those alone (white strokes on black against photographs) and
        then call every image with the normal data's statistics normal. ``"auto"`` matches when
        luminance statistics alone separate the normal images from the OE images
        (:func:`~skad_transfer.data.harmonize.intensity_separability` >= 0.95 on up to 2,000 of
        each; how the threshold was chosen, and on which data: ``docs/design.md``). Set ``False``
        when the anomalies to find differ from normal by brightness or contrast alone.
    anomaly_score : {"auto", "loss+knn", "loss", "knn"}, default="auto"
        What ``score_samples`` returns (:mod:`skad_transfer.scoring`). ``"loss+knn"``: the anomaly
        logit plus the mean distance of the image's fitted pooled features to its 2 nearest normal
        training images, each standardised by its spread over the training images, negated. The
        logit carries what the OE corpus taught; the distance keeps what the features tell apart when
        the corpus is far from the data and the logit calls anomalies of the same kind normal.
        ``"loss"``: the negated logit alone (the paper's score); ``"knn"``: the distance alone.
        ``"auto"`` is ``"loss+knn"`` for a backbone with pooled features (every named backbone) and
        ``"loss"`` for a module that only gives logits; chosen on the development suite
        (``docs/design.md``). The kNN terms keep the training images' features in the model
        (``train_features_``: 4 bytes per feature per image) and add a distance search to scoring.
        Scores are computed in float32 whatever ``precision`` trained the network.
    random_state : int, RandomState or None, default=None
        Seeds the head's initialisation, batch order, OE draws and augmentation, drawn from
        generators of the fit's own (never torch's global generator): two CPU fits with the same
        integer seed give identical scores, also when they run at the same time in threads.
    verbose : bool or int, default=True
        Show a progress bar for fits that run longer than 5 seconds; ``False`` never shows one.

    Attributes
    ----------
    anomaly_score_ : str
        The score ``score_samples`` computes: ``"loss"``, ``"knn"`` or ``"loss+knn"``.
    train_features_ : ndarray of shape (n_train, n_features)
        Pooled features of the normal training images, the kNN bank (only for a kNN score).
    score_standardization_ : dict
        ``{"loss": ..., "knn": ...}``: mean and scale of the anomaly logit and of the kNN distance
        (each training image to the others) over the training images (only for a kNN score).
    n_neighbors_ : int
        Neighbours averaged by the kNN term (2, fewer for a tiny training set; only for a kNN score).
    score_calibration_ : ScoreCalibration or None
        The logistic model of ``score_samples`` behind :meth:`predict_proba`, fitted on normal vs
        OE images (:class:`~skad_transfer.scoring.ScoreCalibration`); None without OE images.
    oe_separability_ : float or None
        How well theta0's pooled features alone, before training, tell the normal training images
        from the OE images (cross-validated AUC of a logistic regression on up to 1,000 of each);
        ``fit`` warns with :class:`~skad_transfer.OutlierExposureWarning` at or above
        :data:`skad_transfer.scoring.OE_SEPARABILITY_THRESHOLD`. None without OE or pooled features.
    match_histograms_ : bool
        Whether the OE images were given normal images' luminance histograms in this fit.
    intensity_separability_ : float or None
        With ``match_histograms="auto"`` and an OE corpus, the separability that decided it
        (cross-validated AUC of luminance statistics alone); otherwise None.
    network_ : torch.nn.Module
        The fine-tuned network, in eval mode, on ``device_``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    history_ : list of dict
        Per epoch (pass over the normal set; the last one may be cut short by ``steps``): epoch,
        steps, lr (of its first step), loss and penalty (means per image), seconds,
        images_per_second; with ``validation_fraction`` also val_loss and val_auc (None without
        OE), and ``stopped_early: True`` on the epoch where early stopping ended training.
    weights_ : WeightsRecord or None
        The resolved theta0.
    input_size_, mean_, std_ : int, tuple, tuple
        The preprocessing used in ``fit`` and at scoring time (kept with the model).
    jpeg_quality_ : int or None
        The JPEG round trip of ``fit``, repeated at scoring time (kept with the model, so that
        changing the ``jpeg_quality`` parameter afterwards cannot desynchronise scoring from training).
    image_shape_ : tuple
        (C, H, W) of one training image as given.
    n_features_in_ : int
        Values per training image (C*H*W); flattened input must have this width.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string columns.
    device_ : torch.device
    n_iter_ : int
        Epochs trained (begun).
    best_epoch_ : int
        The epoch whose weights the model has: the best ``val_loss`` under ``early_stopping``,
        else the last.
    n_validation_ : int
        Normal images held out (0 without ``validation_fraction``).
    validation_indices_ : ndarray of int
        Rows of the training ``X`` that were held out (only with ``validation_fraction``).
    n_trainable_parameters_ : int
        Parameters that were trained (all of them).

    See Also
    --------
    DeepADDetector : the family ADIB is the member ``loss="bce", regularizer="l2sp"`` of.

    Examples
    --------
    >>> import numpy as np
    >>> from skad_transfer import ADIBDetector
    >>> rng = np.random.default_rng(0)
    >>> X_normal = rng.integers(0, 100, (64, 32, 32, 3), dtype=np.uint8)
    >>> X_outlier = rng.integers(100, 256, (64, 32, 32, 3), dtype=np.uint8)
    >>> det = ADIBDetector(weights=None, width=4, epochs=1, device="cpu", random_state=0).fit(X_normal, X_outlier)
    >>> det.predict(X_normal[:4]).shape
    (4,)
    """

    _parameter_constraints = {
        **TransferDetector._parameter_constraints,
        **REGULARIZER_PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        *,
        alpha=1e-2,
        regularizer="l2sp",
        ewc_lambda=400.0,
        backbone="resnet26",
        width=None,
        input_size=None,
        weights="default",
        outlier_exposure=None,
        steps=1500,
        epochs=None,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        contamination="auto",
        image_shape=None,
        device="auto",
        precision="auto",
        compile=False,
        checkpoint=None,
        validation_fraction=None,
        early_stopping=False,
        n_iter_no_change=5,
        warm_start=False,
        jpeg_quality=75,
        match_outlier_exposure=True,
        match_histograms="auto",
        anomaly_score="auto",
        random_state=None,
        verbose=True,
    ):
        super().__init__(
            backbone=backbone, width=width, input_size=input_size, weights=weights,
            outlier_exposure=outlier_exposure, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            weight_decay=weight_decay, contamination=contamination, image_shape=image_shape, device=device, precision=precision, compile=compile,
            checkpoint=checkpoint, validation_fraction=validation_fraction,
            early_stopping=early_stopping, n_iter_no_change=n_iter_no_change, warm_start=warm_start, jpeg_quality=jpeg_quality,
            match_outlier_exposure=match_outlier_exposure, match_histograms=match_histograms, anomaly_score=anomaly_score, random_state=random_state, verbose=verbose,
        )
        self.alpha = alpha
        self.regularizer = regularizer
        self.ewc_lambda = ewc_lambda

    def _recipe(self) -> Recipe:
        return Recipe(loss="bce", regularizer=self.regularizer, alpha=self.alpha, ewc_lambda=self.ewc_lambda)
