"""Data: tokenizer, label maps, catalogues (manifest, Fashion-Gen, synthetic), images and batches.

Everything between files on disk and the tensors ``MVLT.forward_loss`` consumes. This package
never imports the model, training or evaluation code.
"""

from .batches import (
    PAIR_KEYS,
    PRETRAIN_KEYS,
    PairDataset,
    PretrainDataset,
    collate_pairs,
    collate_pretrain,
    encode_labels,
    encode_texts,
    load_images,
    pad_sequences,
    sample_generator,
)
from .catalogue import Catalogue, CatalogueItem, ManifestCatalogue
from .errors import DataError, SkipLog
from .fashiongen import FashionGenCatalogue
from .image_cache import ImageCache, build_image_cache, open_image_cache
from .images import ImageLoadError, load_image, prepare_image, to_rgb
from .labels import LabelMaps
from .sources import open_catalogue
from .synthetic import SyntheticCatalogue
from .tokenizer import BERT_VOCAB, Tokenizer, TokenizerError, bert_tokenizer

__all__ = [
    "BERT_VOCAB",
    "PAIR_KEYS",
    "PRETRAIN_KEYS",
    "Catalogue",
    "CatalogueItem",
    "DataError",
    "FashionGenCatalogue",
    "ImageCache",
    "ImageLoadError",
    "LabelMaps",
    "ManifestCatalogue",
    "PairDataset",
    "PretrainDataset",
    "SkipLog",
    "SyntheticCatalogue",
    "Tokenizer",
    "TokenizerError",
    "bert_tokenizer",
    "build_image_cache",
    "collate_pairs",
    "collate_pretrain",
    "encode_labels",
    "encode_texts",
    "load_image",
    "load_images",
    "open_catalogue",
    "open_image_cache",
    "pad_sequences",
    "prepare_image",
    "sample_generator",
    "to_rgb",
]
