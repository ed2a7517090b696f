"""Learning curves as a picture: each objective's loss by step, one panel per objective, so a plateau
(ITM at ln 2, ITC at ln B) is visible at a glance. Drawn with Pillow from ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

Series = Mapping[str, Sequence[tuple[float, float]]]
"""Objective -> ``(step, loss)`` points."""
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207))


def read_losses(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """``loss/<objective>`` of every line of a training run's ``metrics.jsonl`` (``total`` left out)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    series: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from None
        for key, value in record.items():
            if key.startswith("loss/") and key != "loss/total" and isinstance(value, (int, float)):
                series.setdefault(key[5:], []).append((float(record["step"]), float(value)))
    return series


def draw_curves(
    runs: Mapping[str, Series],
    reference: Mapping[str, float] | None = None,
    panel: tuple[int, int] = (260, 170),
    quantity: str = "loss",
    x_name: str = "step",
) -> Image.Image:
    """One panel per objective, one line per run (``runs``: run name -> series). ``reference``
    draws a dashed level per objective, e.g. ``{"itm": ln 2}``, to show where chance is (or a
    target). ``quantity`` and ``x_name`` label the panels: e.g. recall by minutes."""
    objectives = list(dict.fromkeys(name for series in runs.values() for name in series))
    cols = min(3, max(1, len(objectives)))
    rows = math.ceil(len(objectives) / cols) if objectives else 1
    legend = 16 * len(runs) + 8 if len(runs) > 1 else 0
    width, height = panel
    img = Image.new("RGB", (cols * width, rows * height + legend), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for n, objective in enumerate(objectives):
        x0, y0 = (n % cols) * width, (n // cols) * height
        level = (reference or {}).get(objective)
        _panel(draw, font, (x0, y0, width, height), objective, runs, level, (quantity, x_name))
    for i, name in enumerate(runs):
        y = rows * height + 4 + 16 * i
        colour = COLOURS[i % len(COLOURS)]
        draw.line([(10, y + 6), (34, y + 6)], fill=colour, width=2)
        draw.text((40, y), name, fill="black", font=font)
    return img


def _panel(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    box: tuple[int, int, int, int],
    objective: str,
    runs: Mapping[str, Series],
    level: float | None,
    labels: tuple[str, str] = ("loss", "step"),
) -> None:
    x0, y0, width, height = box
    left, right, top, bottom = x0 + 44, x0 + width - 10, y0 + 22, y0 + height - 24
    points = [p for series in runs.values() for p in series.get(objective, ())]
    values = [v for _, v in points if math.isfinite(v)] + ([level] if level is not None else [])
    if not values:
        return
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    last = max((s for s, _ in points), default=1.0) or 1.0

    def xy(step: float, value: float) -> tuple[float, float]:
        return left + (right - left) * step / last, bottom - (bottom - top) * (value - lo) / (hi - lo)

    draw.rectangle([left, top, right, bottom], outline=(190, 190, 190))
    draw.text((left, y0 + 4), f"{objective} {labels[0]}", fill="black", font=font)
    for value in (lo, hi):
        draw.text((left - 4, xy(0, value)[1]), f"{value:.3g}", anchor="rm", fill=(90, 90, 90), font=font)
    draw.text((right, bottom + 4), f"{labels[1]} {last:.0f}", anchor="ra", fill=(90, 90, 90), font=font)
    if level is not None:
        y = xy(0, level)[1]
        for x in range(int(left), int(right), 8):
            draw.line([(x, y), (min(x + 4, right), y)], fill=(120, 120, 120))
    for i, series in enumerate(runs.values()):
        line = [xy(s, v) for s, v in series.get(objective, ()) if math.isfinite(v)]
        if len(line) > 1:
            draw.line(line, fill=COLOURS[i % len(COLOURS)], width=2)
        elif line:
            draw.ellipse(
                [line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2],
                fill=COLOURS[i % len(COLOURS)],
            )
