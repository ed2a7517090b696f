"""Tagging: every attribute a catalogue has (colour, pattern, department...), from a photo.

Zero-shot (:mod:`.zeroshot`): any checkpoint with ITC heads scores a photo against each label of a
vocabulary embedded as text, so a shop can tag attributes no head was trained for. ``mvlt tag``
(:mod:`.cli`) tags a folder or a catalogue and, with ``--evaluate``, scores the tags against the
catalogue's own columns (:mod:`.evaluate`). Like :mod:`mvlt.search` this package sits on top: it
imports the model, data and evaluation code, and nothing imports it.
"""

from ..data.columns import Columns, catalogue_columns
from .evaluate import metric_name, score_attribute, score_tags
from .vocabulary import DEFAULT_TEMPLATE, VocabularySpec, check_template, load_file, parse_specs
from .zeroshot import ImageTags, Tag, ZeroShotTagger, zero_shot_tags

__all__ = [
    "DEFAULT_TEMPLATE",
    "Columns",
    "ImageTags",
    "Tag",
    "VocabularySpec",
    "ZeroShotTagger",
    "catalogue_columns",
    "check_template",
    "load_file",
    "metric_name",
    "parse_specs",
    "score_attribute",
    "score_tags",
    "zero_shot_tags",
]
