"""The model a run trains and the catalogue it trains on: a new model of a variant, one grown from
``--init`` (its encoder, recognition and tag heads fitted to this catalogue's labels), or the
resumed one; then the parts its objectives leave without a gradient are frozen.

Apart from :mod:`.engine` so the engine reads as the training loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..data.catalogue import Catalogue
from ..data.columns import catalogue_columns
from ..data.labels import LabelMaps
from ..data.tokenizer import Tokenizer
from ..model.importers import resize_pos_embed
from ..model.io import load_state_checked
from ..model.mvlt import MVLT
from ..model.registry import get_config
from .config import TrainConfig
from .data import open_training_catalogue, resolve_tokenizer
from .distributed import Runtime, broadcast_object

HEADS = {"itc": "itc_head", "mir": "decoder", "itm": "itm_head", "mlm": "mlm_head",
         "category": "category_head", "subcategory": "subcategory_head", "tags": "tag_heads",
         "tags_text": "text_tag_heads"}  # fmt: skip
"""The module each objective trains on top of the encoder; frozen when its objective is off."""
ENCODER = ("text_embed", "stages")


def build_model_and_data(
    config: TrainConfig,
    runtime: Runtime,
    weights: Mapping[str, float],
    itm_negatives: str,
    resumed: MVLT | None,
) -> tuple[MVLT, Catalogue, int]:
    """Model (with ``tokenizer`` and ``label_maps`` attached), training catalogue, image size."""
    if resumed is not None:  # everything comes from the checkpoint
        model = resumed
        image_size = config.image_size or model.config.image_size
        catalogue = open_training_catalogue(config, image_size)
        return model, catalogue, image_size

    init = MVLT.from_pretrained(config.init) if config.init else None
    if config.task == "finetune":
        assert init is not None
        image_size = config.image_size or init.config.image_size
    else:
        image_size = config.image_size or get_config(config.model, **config.model_overrides).image_size
    catalogue = open_training_catalogue(config, image_size)
    label_maps = LabelMaps.from_catalogue(catalogue)
    if config.labels:  # an unknown column is a usage error naming the catalogue's columns
        label_maps = label_maps.with_tags(catalogue_columns(catalogue, config.labels, "--labels").values)
    if runtime.is_main or (config.tokenizer or "").lower() != "train":
        tokenizer = resolve_tokenizer(config, catalogue, fallback=init.tokenizer if init else None)
    else:
        tokenizer = None
    if (config.tokenizer or "").lower() == "train":  # train once, share it
        tokenizer = broadcast_object(tokenizer, runtime)
    assert tokenizer is not None
    heads = {
        "num_categories": label_maps.num_categories if weights["category"] else 0,
        "num_subcategories": label_maps.num_subcategories if weights["subcategory"] else 0,
        "tag_classes": {c: len(label_maps.tag_names(c)) for c in label_maps.tag_columns},
    }
    if init is None:
        overrides = {**config.recipe_model_overrides(), "max_text_len": config.max_text_len, **heads}
        check_vocab(overrides.get("vocab_size"), tokenizer, "model_overrides.vocab_size")
        overrides["vocab_size"] = tokenizer.vocab_size
        if config.image_size:
            overrides["image_size"] = config.image_size
        model = MVLT(get_config(config.model, **overrides))
        if model.pair_head is not None and not (weights["kd_image"] or weights["kd_text"]):
            raise ValueError(
                "model_overrides.pair_head learns only from kd_image / kd_text, and both are off: "
                "add --teachers image and/or text, or drop the pair head"
            )
    else:
        model = model_from_init(init, config, heads, label_maps)
        check_vocab(model.config.vocab_size, tokenizer, f"--init {config.init}")
    model.tokenizer, model.label_maps = tokenizer, label_maps
    check_itc_heads(model, config, weights, itm_negatives)
    return model, catalogue, image_size


def check_itc_heads(
    model: MVLT, config: TrainConfig, weights: Mapping[str, float], itm_negatives: str
) -> None:
    """ITC (and ITM on ITC-mined negatives) need the ITC heads, which the paper's model lacks."""
    if model.itc_head is None and (weights["itc"] or itm_negatives == "itc"):
        source = f"--init {config.init}" if config.init else f"model_overrides {config.model_overrides}"
        raise ValueError(
            f"objective itc needs ITC heads, but {source} gives a model without them "
            "(contrastive_dim = 0); drop itc from --objectives or use --recipe paper"
        )


def model_from_init(init: MVLT, config: TrainConfig, heads: dict[str, Any], label_maps: LabelMaps) -> MVLT:
    """A model shaped like ``init`` with recognition and tag heads for ``label_maps``: encoder and
    the other heads keep ``init``'s weights; a recognition head is fresh unless ``init`` had
    heads for exactly these label maps, a tag head unless ``init`` had one for the same labels."""
    size = {"image_size": config.image_size} if config.image_size else {}
    overrides = {**config.teacher_model_overrides(), **config.model_overrides, **size, **heads}
    model = MVLT(init.config.replace(**overrides))  # fresh heads
    same_labels = init.label_maps is not None and init.label_maps == label_maps
    state = resized_positions(init.state_dict(), model)
    fresh = model.state_dict()
    for head, size_field in (
        ("category_head", "num_categories"),
        ("subcategory_head", "num_subcategories"),
    ):
        same_input = init.config.recognition_reads_itc == model.config.recognition_reads_itc
        if not (same_labels and same_input and getattr(init.config, size_field) == heads[size_field]):
            state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
            state.update({k: v for k, v in fresh.items() if k.startswith(head + ".")})
    # The run's teachers shape the projections to their features: ``init``'s are kept where they fit.
    mimic = {k: v for k, v in fresh.items() if k.startswith("mimic_head.")}
    kept_mimic = {k: v for k, v in state.items() if k in mimic and v.shape == mimic[k].shape}
    state = {k: v for k, v in state.items() if not k.startswith("mimic_head.")}
    state.update({**mimic, **kept_mimic})
    old = init.label_maps
    kept = {
        c for c in heads["tag_classes"]
        if old is not None and c in old.tag_columns and old.tag_names(c) == label_maps.tag_names(c)
    }  # fmt: skip
    for prefix in ("tag_heads.", "text_tag_heads."):  # ``init`` may predate its text heads
        had = {k.split(".")[1] for k in state if k.startswith(prefix)}
        state = {k: v for k, v in state.items() if not k.startswith(prefix) or k.split(".")[1] in kept}
        state.update(
            {k: v for k, v in fresh.items() if k.startswith(prefix) and k.split(".")[1] not in kept & had}
        )
    load_state_checked(model, state, f"--init {config.init}")
    return model


def resized_positions(state: dict[str, torch.Tensor], model: MVLT) -> dict[str, torch.Tensor]:
    """``state`` with each stage's image position grid resized to ``model``'s, so that fine-tuning
    at another ``--image-size`` saves a model that says the size it was trained at (evaluation,
    tagging and indexing prepare images at ``model.config.image_size``)."""
    state = dict(state)
    for k, stage in enumerate(model.stages):
        key = f"stages.{k}.pos_embed"
        if key in state and state[key].shape != stage.pos_embed.shape:
            state[key] = resize_pos_embed(state[key], stage.pos_grid, stage.pos_extra_slots)[0]
    return state


def check_vocab(vocab_size: int | None, tokenizer: Tokenizer, what: str) -> None:
    if vocab_size is not None and int(vocab_size) != tokenizer.vocab_size:
        raise ValueError(
            f"{what} has a vocabulary of {vocab_size} tokens but the tokenizer has "
            f"{tokenizer.vocab_size}; pass a matching --tokenizer"
        )


def freeze_unused(model: MVLT, weights: Mapping[str, float], freeze_encoder: bool) -> None:
    """Freeze heads whose objective is off (they would get no gradient, which DDP rejects)
    and, with ``freeze_encoder``, the encoder."""
    shared_itc = model.config.match_head == "fused" and weights["itm"]
    for objective, module_name in HEADS.items():
        module = getattr(model, module_name, None)
        in_use = weights[objective] or (objective == "itc" and shared_itc)  # the fused head's projections
        if module is not None and not in_use:
            module.requires_grad_(False)
    if model.pair_head is not None:  # each projection learns from its teacher alone
        model.pair_head.image_proj.requires_grad_(bool(weights["kd_image"]))
        model.pair_head.text_proj.requires_grad_(bool(weights["kd_text"]))
    for side, loss in (("image_proj", "kd_image_raw"), ("text_proj", "kd_text_raw")):
        proj = getattr(model.mimic_head, side, None)
        if proj is not None:
            proj.requires_grad_(bool(weights[loss]))
    if freeze_encoder:
        for name in ENCODER:
            getattr(model, name).requires_grad_(False)
    trainable = model.num_parameters(trainable_only=True)
    if trainable == 0:
        raise ValueError("nothing to train: every parameter is frozen by the objectives and --freeze-encoder")
