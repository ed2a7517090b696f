"""What a training run takes from the teachers: targets for every batch, and a text-side start.

``--teachers`` names the sources (``text-init``, ``text``, ``image``, ``cross``, ``all`` for those
four, and ``tags``):

- ``text-init``: the word-embedding table starts from MiniLM's (same vocabulary), brought to the
  model's width by its principal components and scaled to the table's initial spread;
- ``text`` / ``image``: the unimodal passes' ITC embeddings mimic the teacher pair's (``kd_text`` /
  ``kd_image``: mean ``1 - cos``);
- ``cross``: ITC also learns from the teacher pair's similarities as soft targets (``kd_cross``).
- ``image-raw`` / ``text-raw``: the unimodal features, through training-only projections
  (``MVLTConfig.mimic_dims``), mimic each teacher's own pooled features, standardised over the
  training rows (``kd_image_raw`` / ``kd_text_raw``: mean ``1 - cos``; FitNets' hints, CLIP-KD's
  feature distillation with a projector): all that the teacher's features hold, not only what
  the pair's projections to the ITC width keep.
- ``tags``: the image tag heads learn the ImageNet teacher's linear-probe probabilities, each row's
  from a probe fitted without it (``kd_tags``; :mod:`.probe`).

``TrainConfig.fit_heads_teacher`` mixes the same kind of probabilities, from both teachers, into
the targets of the recognition heads' closed-form fit (:func:`recognition_targets`).

The teacher pair (:mod:`.dual`) is fitted on the run's own training rows, in the model's ITC
width, so its embeddings are targets in the model's own space. Features and the fitted pair are
cached (:mod:`.features`), and so are the tag probes' probabilities; a resumed run finds them there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ...data.columns import catalogue_columns
from ...data.labels import LabelMaps
from ...fileio import atomic_write, atomic_write_text
from ..distributed import Runtime, barrier
from .dual import DualEncoder, fit_dual_encoder
from .features import catalogue_fingerprint, default_cache_dir, teacher_features
from .models import IMAGE_TEACHER, TEXT_TEACHER, TextTeacher, check_vocabulary, require_teachers
from .probe import PROBE_VERSION, out_of_fold_probabilities
from .sources import PAIR_LOSSES, RAW_WIDTHS


@dataclass
class TeacherTargets:
    """Per training row, looked up by the batch's ``index``: the teacher pair's unit embeddings
    (when a ``kd_text`` / ``kd_image`` / ``kd_cross`` loss is on) and, per tag column, the image
    teacher's class probabilities (when ``kd_tags`` is)."""

    image: torch.Tensor | None = None
    text: torch.Tensor | None = None
    temperature: float = 1.0
    tags: dict[str, torch.Tensor] | None = None
    image_raw: torch.Tensor | None = None
    """The image teacher's own pooled features, standardised (``kd_image_raw``)."""
    text_raw: torch.Tensor | None = None
    """The text teacher's (``kd_text_raw``)."""

    def attach(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        rows = batch["index"].cpu()
        device = batch["images"].device
        out = dict(batch)
        if self.image is not None and self.text is not None:
            out["target_image_emb"] = self.image[rows].to(device)
            out["target_text_emb"] = self.text[rows].to(device)
            out["target_temperature"] = torch.tensor(self.temperature, device=device)
        for name in ("image_raw", "text_raw"):
            if getattr(self, name) is not None:
                out[f"target_{name}"] = getattr(self, name)[rows].to(device)
        if self.tags is not None:
            out["target_tags"] = {column: p[rows].to(device) for column, p in self.tags.items()}
        return out


def teacher_targets(
    catalogue: Any, dim: int, seed: int, cache_dir: str | Path | None = None, progress: bool = True
) -> tuple[TeacherTargets, dict[str, Any]]:
    """Fit (or load) the teacher pair on ``catalogue`` in ``dim`` dimensions; return its
    embeddings of every row and a record of the fit for the run's log."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    features = teacher_features(catalogue, cache, progress=progress)
    digest = hashlib.sha256(f"{catalogue_fingerprint(catalogue)}/{dim}/{seed}".encode())
    for name in sorted(features):  # features made another way (version, precision) refit the pair
        digest.update(features[name].numpy().tobytes())
    key = digest.hexdigest()[:24]
    fitted = cache / f"dual-{key}"
    if (fitted / "dual_encoder.json").is_file():
        pair, fit = DualEncoder.load(fitted)
    else:
        groups = list(getattr(catalogue, "groups", None) or catalogue.product_ids)
        pair, fit = fit_dual_encoder(features["image"], features["text"], groups, dim, seed=seed)
        pair.save(fitted, fit)
    with torch.no_grad():
        targets = TeacherTargets(
            pair.embed_images(features["image"]), pair.embed_texts(features["text"]), pair.temperature
        )
    record = {"dim": dim, "epochs": fit.epochs, "temperature": round(pair.temperature, 4),
              "held_out_r1": fit.held_out_r1, "cache": str(fitted)}  # fmt: skip
    return targets, record


def raw_targets(
    catalogue: Any, sides: list[str], cache_dir: str | Path | None = None, progress: bool = True
) -> dict[str, torch.Tensor]:
    """``{"image_raw": N x 1280, "text_raw": N x 384}`` (the ``sides`` asked) of every row of
    ``catalogue``: each teacher's cached pooled features, standardised per dimension over these
    rows, so that no few high-variance channels dominate the cosine the student is taught (a
    channel constant over the rows, such as a ReLU that never fires, becomes 0), then unit length
    per row (the targets of :func:`~mvlt.model.objectives.embedding_distillation`)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    features = teacher_features(catalogue, cache, progress=progress)
    out = {}
    for side in sides:
        x = features[side].float()
        spread = x.std(0)
        varies = spread > 1e-6 * x.abs().amax(0).clamp_min(1e-12)  # not constant but for rounding
        standard = torch.where(varies, (x - x.mean(0)) / spread.clamp_min(1e-12), 0.0)
        out[f"{side}_raw"] = torch.nn.functional.normalize(standard, dim=-1)
    return out


def tag_targets(
    catalogue: Any,
    label_maps: LabelMaps,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Per tag column of ``label_maps``, ``N x classes`` probabilities of every row of ``catalogue``
    from the image teacher's out-of-fold linear probe (:mod:`.probe`), and a record per column.
    Cached per column (features, labels and probe version in the key): a resumed run, another
    rank or a second recipe on the same rows reads them instead of re-fitting."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    features = teacher_features(catalogue, cache, progress=progress)["image"]
    columns = label_maps.tag_columns
    values = catalogue_columns(catalogue, columns, "--labels").values
    groups = list(getattr(catalogue, "groups", None) or catalogue.product_ids)
    targets, records = {}, {}
    for column in columns:
        names = label_maps.tag_names(column)
        ids = {name: i for i, name in enumerate(names)}
        labels = torch.tensor([ids.get(v, -1) for v in values[column]])
        targets[column], records[column] = probe_probabilities(
            cache, "tags", column, names, features, labels, groups
        )
    return targets, records


def recognition_targets(
    catalogue: Any, label_maps: LabelMaps, cache_dir: str | Path | None = None, progress: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``{"category": N x C, "subcategory": N x S}`` probabilities of every row of ``catalogue``
    from an out-of-fold linear probe on both teachers' features side by side (photo and
    description, what recognition reads), and a record per head; cached as :func:`tag_targets`.
    They are the soft targets of the heads' closed-form fit (``TrainConfig.fit_heads_teacher``)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = teacher_features(catalogue, cache, progress=progress)
    features = torch.cat((cached["image"], cached["text"]), 1)
    groups = list(getattr(catalogue, "groups", None) or catalogue.product_ids)
    targets, records = {}, {}
    for head, names, values in (
        ("category", label_maps.category_names, catalogue.categories),
        ("subcategory", label_maps.subcategory_names, catalogue.subcategories),
    ):
        ids = {name: i for i, name in enumerate(names)}
        labels = torch.tensor([ids.get(v, -1) for v in values])
        targets[head], records[head] = probe_probabilities(
            cache, "recognition", head, names, features, labels, groups
        )
    return targets, records


def probe_probabilities(
    cache: Path,
    kind: str,
    column: str,
    names: list[str],
    features: torch.Tensor,
    labels: torch.Tensor,
    groups: list,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """:func:`.probe.out_of_fold_probabilities` of one column, cached in ``cache/{kind}-{key}``
    (features, labels, class names, groups and probe version in the key)."""
    digest = hashlib.sha256(f"{PROBE_VERSION}/{column}/{names}/{groups}".encode())
    for part in (features, labels):
        digest.update(part.numpy().tobytes())
    fitted = cache / f"{kind}-{digest.hexdigest()[:24]}"
    if (fitted / "record.json").is_file():
        probabilities = load_file(str(fitted / "probabilities.safetensors"))["probabilities"]
        return probabilities, json.loads((fitted / "record.json").read_text(encoding="utf-8"))
    probabilities, record = out_of_fold_probabilities(features, labels, len(names), groups)
    fitted.mkdir(parents=True, exist_ok=True)
    tensors = {"probabilities": probabilities.contiguous()}
    atomic_write(fitted / "probabilities.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_text(fitted / "record.json", json.dumps(record, indent=2) + "\n")
    return probabilities, record


def minilm_word_embeddings(width: int, std: float = 0.02) -> torch.Tensor:
    """MiniLM's ``V x 384`` word embeddings projected on their first ``width`` principal axes
    (centred), scaled so that the entries' spread is ``std``, the model's own initial spread."""
    table = TextTeacher().word_embeddings().float()
    centred = table - table.mean(0)
    if width >= table.shape[1]:
        projected = torch.cat([centred, centred.new_zeros(len(table), width - table.shape[1])], 1)
    else:
        sample = torch.randperm(len(table), generator=torch.Generator().manual_seed(0))[:8192]
        _, _, v = torch.linalg.svd(centred[sample], full_matrices=False)
        projected = centred @ v[:width].t()
    return projected * (std / projected.std())


def setup_teachers(
    config: Any, model: Any, catalogue: Any, runtime: Runtime, weights: Mapping[str, float], fresh: bool
) -> tuple[TeacherTargets | None, list[str]]:
    """Prepare what ``config.teachers`` asks for: the batch targets (``None`` when no ``kd_*`` loss
    is on) and, on a fresh run, MiniLM's word embeddings in ``model``. Returns log lines too.
    Rank 0 computes and caches; the other ranks then read the cache."""
    sources = config.teacher_sources()
    lines: list[str] = []
    if sources or config.fit_heads_teacher:  # the heads' fit needs them at the end: say so now
        require_teachers()
    if "text-init" in sources and fresh and not config.init:
        width = model.text_embed.word_embeddings.weight.shape[1]
        check_text_vocabulary(model.tokenizer)
        with torch.no_grad():
            words = model.text_embed.word_embeddings
            words.weight.copy_(minilm_word_embeddings(width))
            if words.padding_idx is not None:  # [PAD] stays the zero vector, as initialised
                words.weight[words.padding_idx] = 0
        lines.append(f"  teachers: word embeddings from {TEXT_TEACHER} ({width} principal axes of 384)")
    pair, tags = any(weights.get(n) for n in PAIR_LOSSES), bool(weights.get("kd_tags"))
    raw = [name.split("_")[1] for name in RAW_WIDTHS if weights.get(name)]  # "image", "text"
    if not (pair or tags or raw):
        return None, lines
    dim = model.config.contrastive_dim
    if raw and model.mimic_head is None:
        raise ValueError("kd_image_raw / kd_text_raw teach the model's mimic_head: set MVLTConfig.mimic_dims")
    if pair and not dim:
        raise ValueError("teacher distillation needs the model's ITC heads (contrastive_dim > 0)")
    if tags and not model.tag_heads:
        raise ValueError("kd_tags teaches the tag heads, and this model has none (--labels)")
    if {"text", "cross", "text-raw"} & set(sources):
        check_text_vocabulary(model.tokenizer)
    targets, record, probes = TeacherTargets(), None, None
    for turn in ("main", "others"):  # rank 0 fills the caches; the others then read them
        if (turn == "main") == runtime.is_main:
            if pair:
                targets, record = teacher_targets(
                    catalogue, dim, config.seed, config.teacher_cache, runtime.is_main
                )
            if tags:
                targets.tags, probes = tag_targets(
                    catalogue, model.label_maps, config.teacher_cache, runtime.is_main
                )
            for name, value in raw_targets(catalogue, raw, config.teacher_cache, runtime.is_main).items():
                setattr(targets, name, value)
        barrier(runtime)
    if record is not None:
        r1 = max(record["held_out_r1"] or [0.0])
        lines.append(
            f"  teachers: pair {IMAGE_TEACHER} + {TEXT_TEACHER} fitted in {dim} d ({record['epochs']} "
            f"epochs, held-out R@1 {100 * r1:.1f} %, temperature {record['temperature']:g}); "
            f"cache {record['cache']}"
        )
    for side in raw:
        teacher = IMAGE_TEACHER if side == "image" else TEXT_TEACHER
        lines.append(f"  teachers: {side} features of {teacher}, standardised, mimicked through a projection")
    for column, probe in (probes or {}).items():
        lines.append(
            f"  teachers: tags {column!r} from an {IMAGE_TEACHER} linear probe (L2 {probe['l2']:g}), "
            f"out-of-fold accuracy "
            f"{100 * probe['out_of_fold_acc']:.1f} %"
        )
    return targets, lines


def check_text_vocabulary(tokenizer: Any) -> None:
    """The run's tokenizer must be MiniLM's vocabulary (the bundled BERT-uncased one)."""
    check_vocabulary(TextTeacher(), [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)])
