"""The names of the teacher sources a run can ask for (``TrainConfig.teachers``)."""

from __future__ import annotations

SOURCES = ("text-init", "text", "image", "cross", "tags", "text-raw", "image-raw")
ALL = ("text-init", "text", "image", "cross")
"""What ``all`` names: every source that pre-training can use (``tags`` needs tag heads)."""
LOSS_OF_SOURCE = {"text": "kd_text", "image": "kd_image", "cross": "kd_cross", "tags": "kd_tags",
                  "text-raw": "kd_text_raw", "image-raw": "kd_image_raw"}  # fmt: skip
PAIR_LOSSES = ("kd_text", "kd_image", "kd_cross")
"""The losses taught by the teacher pair's ITC-width embeddings (they need the model's ITC heads)."""
RAW_WIDTHS = {"kd_image_raw": 1280, "kd_text_raw": 384}
"""The losses taught by each teacher's own pooled features, and those features' widths
(EfficientNet-Lite0's, MiniLM's): the widths of the model's ``mimic_dims`` projections."""


def parse_sources(spec: str | list[str] | None) -> list[str]:
    """``"all"`` (:data:`ALL`, with any other names), a comma list or a list -> the sources in
    canonical order; unknown names refused."""
    if spec is None or spec == "" or spec == []:
        return []
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip()]
    if "all" in names:
        names = [n for n in names if n != "all"] + list(ALL)
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown teacher source(s) {unknown}; choose from {', '.join(SOURCES)} or all")
    return [s for s in SOURCES if s in names]
