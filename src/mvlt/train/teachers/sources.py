"""The names of the teacher sources a run can ask for (``TrainConfig.teachers``)."""

from __future__ import annotations

SOURCES = ("text-init", "text", "image", "cross", "tags")
ALL = ("text-init", "text", "image", "cross")
"""What ``all`` names: every source that pre-training can use (``tags`` needs tag heads)."""
LOSS_OF_SOURCE = {"text": "kd_text", "image": "kd_image", "cross": "kd_cross", "tags": "kd_tags"}
PAIR_LOSSES = ("kd_text", "kd_image", "kd_cross")
"""The losses taught by the teacher pair's ITC-width embeddings (they need the model's ITC heads)."""


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
