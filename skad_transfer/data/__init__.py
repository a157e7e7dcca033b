"""Image inputs, augmentation, outlier-exposure corpora, the dataset catalogue and synthetic data."""

from .._paths import cache_root, data_root
from .catalogue import CATALOGUE, load_dataset
from .corpora import OutlierCorpus, list_corpora, register_corpus, resolve_corpus
from .images import ImageBatch, as_image_batch

__all__ = ["OutlierCorpus", "list_corpora", "register_corpus", "resolve_corpus", "ImageBatch", "as_image_batch",
           "CATALOGUE", "load_dataset", "data_root", "cache_root"]
