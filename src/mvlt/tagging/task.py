"""One tagging evaluation behind ``mvlt evaluate --task tagging`` and ``mvlt tag --evaluate``: tag a
catalogue split with the checkpoint's heads and the zero-shot attributes, from the image alone and
from image + text, score every top label against the catalogue's own columns, and write
``metrics.json``, ``report.html`` and ``tags.jsonl``.

Image-only is the number to quote (a new photo has no description); image + text is reported
beside it because a description may state the answer (H&M's end with "Colour: Black.").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.columns import catalogue_columns
from ..exits import UsageError
from ..fileio import atomic_write_text
from .evaluate import metric_name, score_tags, scorer_name, source_stat
from .neighbours import DEFAULT_K, DEFAULT_TEMPERATURE, DEFAULT_WEIGHT, Neighbours, open_neighbours
from .report import render_tagging_report
from .run import TagRun, load_model, tag_photos, write_tags
from .sources import CataloguePhotos
from .tagger import FINE_TUNED, IMAGE, IMAGE_TEXT, MODES, SOURCES, Tagger
from .vocabulary import DEFAULT_TEMPLATE, VocabularySpec

IMAGE_TEXT_WORDS = (
    "each source's image evidence (its probabilities from the image-only pass) times the text's "
    "evidence, renormalised: a product of experts. The image heads were trained on the image pass "
    "and never read text. "
)
TEXT_HEADS_WORDS = (
    "Fine-tuned: the text's evidence is the checkpoint's text tag heads (trained beside the image "
    "heads on the text-only pass's [CLS]): two fine-tuned experts. "
)
NO_TEXT_HEADS_WORDS = (
    "Fine-tuned: this checkpoint has no text tag heads (fine-tuned before they existed), so the "
    "text's evidence is zero-shot, as for the zero-shot source. "
)
ZERO_SHOT_TEXT_WORDS = (
    "Zero-shot text evidence: the description's ITC embedding against each label's, over the same "
    "temperature; for the zero-shot source this is zero-shot on the sum of the photo's and the "
    "description's embeddings"
)


def image_text_words(tagger: Tagger) -> str:
    """What image + text means for this tagger's sources, in words (``protocol.modes``)."""
    words = IMAGE_TEXT_WORDS
    if tagger.heads:
        words += TEXT_HEADS_WORDS if tagger.text_heads else NO_TEXT_HEADS_WORDS
    return words + ZERO_SHOT_TEXT_WORDS if _zero_shot_text(tagger) else words.rstrip()


def _zero_shot_text(tagger: Tagger) -> bool:
    """Whether some source's text evidence is zero-shot."""
    return tagger.zero_shot is not None or (bool(tagger.heads) and not tagger.text_heads)


@dataclass
class TagEvalOptions:
    """What one tagging evaluation reads (both commands fill it from their flags)."""

    checkpoint: Path
    data: str
    out: Path
    split: str | None = None
    spec: VocabularySpec | None = None
    prompt: str = DEFAULT_TEMPLATE
    temperature: float | None = None
    top_k: int = 3
    batch_size: int = 32
    limit: int | None = None
    skip_bad_rows: bool = False
    device: str = "cpu"
    precision: str | None = None
    progress: bool = False
    neighbours: str | None = None
    neighbours_split: str | None = "train"
    neighbours_k: int = DEFAULT_K
    neighbours_temperature: float = DEFAULT_TEMPERATURE
    neighbour_weight: float = DEFAULT_WEIGHT


@dataclass
class TagEvaluation:
    """What an evaluation scored: the flat metrics (``metrics.json`` without its protocol), the
    attributes in order, the tagging run (what it skipped) and the catalogue it read."""

    metrics: dict[str, Any]
    attributes: list[str]
    run: TagRun
    source: str


def evaluate_tagging(options: TagEvalOptions) -> TagEvaluation:
    """Tag ``options.split`` (default test, else validation) and score it; writes into ``out``."""
    from ..eval.cli import open_split
    from ..runtime import resolve_device, resolve_precision

    catalogue = open_split(options.data, options.split, skip_bad_rows=options.skip_bad_rows)
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision or ("fp32" if device.type == "cpu" else "auto"), device)
    spec = options.spec
    model, heads = load_model(options.checkpoint, device, zero_shot=spec is not None)
    wanted = list(dict.fromkeys([*heads, *(spec.attributes if spec is not None else [])]))
    columns = catalogue_columns(catalogue, wanted)
    vocabulary = None
    if spec is not None:
        vocabulary = {a: spec.labels.get(a) or columns.labels[a] for a in spec.attributes}
    neighbours = _neighbours(options, catalogue, model, heads, device, precision.autocast)
    tagger = Tagger(
        model, vocabulary, template=options.prompt, temperature=options.temperature,
        autocast=precision.autocast, neighbours=neighbours, neighbour_weight=options.neighbour_weight,
    )  # fmt: skip
    source = CataloguePhotos(catalogue)
    run = tag_photos(
        tagger, source, image_size=int(model.config.image_size), top_k=options.top_k,
        batch_size=options.batch_size, limit=options.limit, skip_bad_rows=options.skip_bad_rows,
        progress=options.progress, device=device,
        texts=(lambda photo: catalogue.texts[photo.row]) if tagger.reads_text else None,
    )  # fmt: skip
    metrics, details = _score(run, columns.values, tagger)
    protocol = _protocol(options, run, tagger, catalogue, precision.name, details)
    write_tags(options.out / "tags.jsonl", run.tagged, tagger.attributes)
    text = json.dumps({**metrics, "protocol": protocol}, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(options.out / "metrics.json", text)
    atomic_write_text(options.out / "report.html", render_tagging_report(metrics, protocol))
    return TagEvaluation(metrics, tagger.attributes, run, source.source)


def _neighbours(
    options: TagEvalOptions, catalogue: Any, model: Any, heads: dict, device: Any, autocast: Any
) -> Neighbours | None:
    """``--neighbours``' memory; refused when it is the split being scored (each photo would find
    itself)."""
    if options.neighbours is None:
        return None
    same_file = Path(options.neighbours).resolve() == Path(str(getattr(catalogue, "path", ""))).resolve()
    if same_file and options.neighbours_split == getattr(catalogue, "split", None):
        raise UsageError(
            f"--neighbours {options.neighbours} --neighbours-split {options.neighbours_split}: the split "
            "being scored cannot vote for its own tags; give the training split"
        )
    return open_neighbours(
        model, heads, options.neighbours, options.neighbours_split, k=options.neighbours_k,
        temperature=options.neighbours_temperature,
        batch_size=options.batch_size, device=device, autocast=autocast,
        skip_bad_rows=options.skip_bad_rows, progress=options.progress,
    )  # fmt: skip


def _score(
    run: TagRun, values: dict[str, list[str]], tagger: Tagger
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every scorer's top label of every tagged row against the column's ``values``."""
    rows = [int(t.photo.row or 0) for t in run.tagged]  # every photo of a catalogue has its row
    predicted: dict[str, dict[str, list[str]]] = {}
    labels: dict[str, list[str]] = {}
    with_text = bool(run.tagged) and run.tagged[0].with_text is not None
    for a in tagger.attributes:
        offered = [s for s, vocabulary in tagger.vocabularies.items() if a in vocabulary]
        predicted[a] = {}
        for s in offered:  # each source image only, then image + text
            predicted[a][s] = [t.by_source[s][a][0].label for t in run.tagged]
            if with_text:
                top1 = [t.with_text[s][a][0].label for t in run.tagged if t.with_text is not None]
                predicted[a][scorer_name(s, IMAGE_TEXT)] = top1
        labels[a] = list(dict.fromkeys(label for s in offered for label in tagger.vocabularies[s][a]))
    truth = {a: [values[a][r] for r in rows] for a in tagger.attributes}
    return score_tags(predicted, truth, labels)


def _protocol(
    options: TagEvalOptions, run: TagRun, tagger: Tagger, catalogue: Any, precision: str,
    details: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """How the numbers were made, in words, with each attribute's details."""
    zero_shot = tagger.zero_shot
    reads_text = bool(run.tagged) and run.tagged[0].with_text is not None
    prompted = zero_shot is not None or (reads_text and _zero_shot_text(tagger))
    protocol: dict[str, Any] = {
        "task": "tagging: fine-tuned tag heads on the image-only pass and zero-shot from the ITC "
        "embeddings, each from the image alone (the default; the unsuffixed metrics) and from image "
        "+ text (metrics ending in _image_text)",
        "checkpoint": str(options.checkpoint),
        "catalogue": str(catalogue.source),
        "split": getattr(catalogue, "split", None) or "(all rows)",
        "photos": len(run.tagged),
        "skipped": dict(run.skips.counts),
        "sources": {a: [s for s, v in tagger.vocabularies.items() if a in v] for a in tagger.attributes},
        "modes": {
            IMAGE: "the image-only pass: the photo alone, as a new product is tagged",
            IMAGE_TEXT: image_text_words(tagger)
            if reads_text
            else "not scored: reading the text needs the checkpoint's tokenizer, and zero-shot text "
            "evidence its ITC heads",
        },
        "prompt": options.prompt if prompted else None,
        "temperature": _temperature(tagger, reads_text),
        "neighbours": _neighbour_words(tagger),
        "image_size": int(tagger.model.config.image_size),
        "precision": precision,
        "labels": "fine-tuned: the head's labels (the training split's values); zero-shot: given with "
        "--zero-shot, else the column's distinct values over the whole manifest",
        "matching": "case-folded, spaces collapsed; empty values and values no source offers: counted, "
        "not scored",
        "majority": "always the most common value of the scored rows",
        "attributes": details,
    }
    if hasattr(catalogue, "skips"):  # what the catalogue left out, as mvlt evaluate records it
        from ..data.audit import audit

        protocol["data"] = audit(catalogue)
    return protocol


def _neighbour_words(tagger: Tagger) -> dict[str, Any] | None:
    """What voted, and how (``protocol.neighbours``), when a memory was given."""
    memory = tagger.neighbours
    if memory is None:
        return None
    return {
        "catalogue": memory.source, "photos": len(memory), "k": memory.k, "temperature": memory.temperature,
        "weight": tagger.neighbour_weight,
        "words": "neighbours: the k most similar photos of the catalogue (cosine of the image pass's "
        "pooled features) vote for their labels with weights softmax(cosine / temperature); "
        "fine-tuned+neighbours: (1 - weight) * the heads' probabilities + weight * the votes",
    }  # fmt: skip


def _temperature(tagger: Tagger, reads_text: bool) -> float | None:
    """The temperature of the zero-shot source and of the text's evidence, when either was used."""
    if tagger.zero_shot is not None:
        return tagger.zero_shot.temperature
    if reads_text and _zero_shot_text(tagger):
        return tagger.text_evidence(FINE_TUNED).temperature
    return None


def format_scores(metrics: dict[str, Any], attributes: list[str]) -> str:
    """One line per attribute: each scorer's accuracy and macro-F1 beside the majority class's."""
    lines = []
    for a in attributes:
        stats = ("acc_majority", "macro_f1_majority", "items", "labels", "unlabelled_items", "unknown_items")
        m = {stat: metrics.get(metric_name(a, stat)) for stat in stats}
        if m["acc_majority"] is None:
            lines.append(
                f"{a}: no scored rows ({m['unlabelled_items']} empty, {m['unknown_items']} not offered)"
            )
            continue
        scores = [
            f"{scorer} accuracy {100 * metrics[metric_name(a, 'acc_' + source_stat(scorer))]:.1f} %, "
            f"macro-F1 {metrics[metric_name(a, 'macro_f1_' + source_stat(scorer))]:.3f}"
            for s in SOURCES
            for scorer in (scorer_name(s, mode) for mode in MODES)
            if metric_name(a, "acc_" + source_stat(scorer)) in metrics
        ]
        lines.append(
            f"{a}: {'; '.join(scores)} (majority {100 * m['acc_majority']:.1f} %, "
            f"{m['macro_f1_majority']:.3f}); {m['labels']} labels, {m['items']} rows scored, "
            f"{m['unlabelled_items']} empty and {m['unknown_items']} not offered left out"
        )
    return "\n".join(lines)
