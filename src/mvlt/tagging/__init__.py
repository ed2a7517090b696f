"""Tagging: every attribute a catalogue has (colour, pattern, department...), from a photo.

Two sources, one image-only pass (:mod:`.tagger`): a checkpoint's fine-tuned tag heads
(``mvlt finetune --labels colour,pattern``), and zero-shot (:mod:`.zeroshot`): any checkpoint with
ITC heads scores a photo against each label of a vocabulary embedded as text, so a shop can tag
attributes no head was trained for. The heads' tags can also take the votes of the nearest
labelled catalogue photos (:mod:`.neighbours`, ``--neighbours``). ``mvlt tag`` (:mod:`.cli`) tags
a folder or a catalogue;
``mvlt evaluate --task tagging`` (or ``mvlt tag --evaluate``, :mod:`.task`) scores the tags against
the catalogue's own columns (:mod:`.evaluate`), from the image alone and from image + text, with
a report (:mod:`.report`). Like
:mod:`mvlt.search` this package sits on top: it imports the model, data and evaluation code, and
nothing below imports it.
"""

from ..data.columns import Columns, catalogue_columns
from .evaluate import metric_name, score_attribute, score_tags
from .neighbours import Neighbours, build_neighbours
from .tagger import (
    BLENDED,
    FINE_TUNED,
    IMAGE,
    IMAGE_TEXT,
    NEIGHBOURS,
    ZERO_SHOT,
    Tagger,
    head_labels,
    tag_images,
)  # fmt: skip
from .vocabulary import DEFAULT_TEMPLATE, VocabularySpec, check_template, load_file, parse_specs
from .zeroshot import ImageTags, Tag, ZeroShotTagger, zero_shot_tags

__all__ = [
    "BLENDED",
    "DEFAULT_TEMPLATE",
    "FINE_TUNED",
    "IMAGE",
    "IMAGE_TEXT",
    "NEIGHBOURS",
    "ZERO_SHOT",
    "Columns",
    "ImageTags",
    "Neighbours",
    "Tag",
    "Tagger",
    "VocabularySpec",
    "ZeroShotTagger",
    "build_neighbours",
    "catalogue_columns",
    "check_template",
    "head_labels",
    "load_file",
    "metric_name",
    "parse_specs",
    "score_attribute",
    "score_tags",
    "tag_images",
    "zero_shot_tags",
]
