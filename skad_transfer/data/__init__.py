"""Image inputs, augmentation, outlier-exposure corpora, datasets and synthetic data."""

from .corpora import OutlierCorpus, list_corpora, register_corpus, resolve_corpus
from .images import ImageBatch, as_image_batch

__all__ = ["OutlierCorpus", "list_corpora", "register_corpus", "resolve_corpus", "ImageBatch", "as_image_batch"]
