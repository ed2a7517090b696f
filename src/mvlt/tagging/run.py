"""Tag a folder or catalogue batch by batch, and write the tags as JSONL or CSV.

Photos are decoded and prepared on the way (:func:`.sources.prepared_batches`); an unreadable one
stops the run naming it, or is skipped and counted (``skip_bad_rows``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.batches import encode_texts
from ..data.errors import SkipLog
from ..fileio import atomic_write_text
from .sources import Photo, PhotoSource, prepared_batches
from .tagger import IMAGE, IMAGE_TEXT, Tagger, merge
from .zeroshot import ImageTags

OUTPUT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass
class TaggedPhoto:
    """A photo and its tags: one line of ``tags.jsonl``, one row of ``tags.csv``. ``by_source``
    holds every source's tags (:meth:`Tagger.tag_by_source`), ``sources`` which one each
    attribute is reported from; ``with_text``, when the photo's text was read too, every
    source's image + text tags."""

    photo: Photo
    by_source: dict[str, ImageTags]
    sources: dict[str, str]
    with_text: dict[str, ImageTags] | None = None

    @property
    def tags(self) -> ImageTags:
        return merge(self.by_source, self.sources)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "image": self.photo.name,
            "product_id": self.photo.product_id,
            "tags": {a: [t.to_dict() for t in tags] for a, tags in self.tags.items()},
            "sources": dict(self.sources),
        }
        if self.with_text is not None:
            merged = merge(self.with_text, self.sources)
            out["tags_image_text"] = {a: [t.to_dict() for t in tags] for a, tags in merged.items()}
        return out


@dataclass
class TagRun:
    """What a run tagged, and what it skipped (by reason, the first few named)."""

    tagged: list[TaggedPhoto] = field(default_factory=list)
    skips: SkipLog = field(default_factory=SkipLog)


def tag_photos(
    tagger: Tagger,
    source: PhotoSource,
    *,
    image_size: int,
    top_k: int = 3,
    batch_size: int = 32,
    limit: int | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
    device: torch.device | str = "cpu",
    texts: Callable[[Photo], str] | None = None,
) -> TagRun:
    """Tag the first ``limit`` photos of ``source`` (all when None), ``batch_size`` at a time;
    with ``texts`` (a photo's text, e.g. its catalogue description) from the photo and its text
    as well (:attr:`TaggedPhoto.with_text`), in the same image pass."""
    photos = source.photos[:limit] if limit is not None else source.photos
    run = TagRun()
    batches = prepared_batches(
        source, photos, image_size=image_size, batch_size=batch_size, skips=run.skips,
        skip_bad_rows=skip_bad_rows, progress=progress,
    )  # fmt: skip
    for chunk, pixels in batches:
        tokens = None
        if texts is not None:
            batch_texts = encode_texts(tagger.model.tokenizer, [texts(p) for p in chunk])
            tokens = (batch_texts["input_ids"].to(device), batch_texts["attention_mask"].to(device))
        tags = tagger.tag_modes(pixels.to(device), tokens, top_k)
        run.tagged.extend(
            TaggedPhoto(p, t[IMAGE], tagger.sources, t.get(IMAGE_TEXT)) for p, t in zip(chunk, tags)
        )
    return run


def output_format(path: Path) -> str:
    """``jsonl`` or ``csv`` from the file's suffix (anything else: a ValueError naming it)."""
    kind = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"--out {path}: write tags to a .jsonl or .csv file")
    return kind


def write_tags(path: Path, tagged: Sequence[TaggedPhoto], attributes: Sequence[str]) -> Path:
    """Write ``tagged`` to ``path`` (atomically), as JSONL or CSV by its suffix.

    CSV: ``image, product_id``, then per attribute its best label, that label's probability, the
    top-k as ``label:probability`` joined by ``|`` and the tags' source (``fine-tuned`` or
    ``zero-shot``), for spreadsheets and catalogue imports.
    """
    if output_format(path) == "jsonl":
        text = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in tagged)
        return atomic_write_text(path, text)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    suffixes = ("", "_p", "_top", "_source")
    writer.writerow(["image", "product_id", *(f"{a}{s}" for a in attributes for s in suffixes)])
    for t in tagged:
        row, merged = [t.photo.name, t.photo.product_id or ""], t.tags
        for a in attributes:
            tags = merged[a]
            row += [tags[0].label, f"{tags[0].probability:.4f}"]
            row.append("|".join(f"{x.label}:{x.probability:.4f}" for x in tags))
            row.append(t.sources[a])
        writer.writerow(row)
    return atomic_write_text(path, buffer.getvalue())


def load_model(checkpoint: Path, device: torch.device, zero_shot: bool) -> tuple[Any, dict[str, list[str]]]:
    """The checkpoint's model on ``device`` and its tag heads' labels; refuses a checkpoint with
    nothing to tag (no heads and no zero-shot vocabulary: exit 2) or zero-shot without ITC heads."""
    from ..exits import UsageError
    from ..model import MVLT
    from .tagger import head_labels
    from .zeroshot import require_itc

    if not checkpoint.is_dir():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: not a checkpoint directory")
    model = MVLT.from_pretrained(checkpoint).eval().to(device)
    try:
        if zero_shot:
            require_itc(model)
        heads = head_labels(model)
    except ValueError as err:
        raise ValueError(f"checkpoint {checkpoint}: {err}") from None
    if not zero_shot and not heads:
        raise UsageError(
            f"--checkpoint {checkpoint} has no tag heads (mvlt finetune --labels colour,...): "
            "say what to tag with --zero-shot"
        )
    return model, heads
