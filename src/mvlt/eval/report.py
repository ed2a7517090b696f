"""``report.html``: one self-contained page (every picture a base64 data URI) with the paper's
figures for our run and the metrics tables with the protocol written out in words.

Sections: metrics and protocol; retrieval examples (Fig. 5: a text query with its top-5 images,
and the image query with its top-5 texts, the positive marked); recognition (accuracy, per-class
F1, the confusion matrix drawn with PIL, examples as in Fig. 6); masked image generation (Fig. 7:
original / masked / reconstructed per strategy); timing. Thumbnails are downscaled to keep the
page small.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import names
from .curves import draw_curves, read_losses
from .retrieval import scorer_tag
from .run import EvalRun

THUMB = 112
TEXT_CHARS = 160
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.row{display:flex;gap:8px;align-items:flex-start;margin:10px 0;flex-wrap:wrap}
.card{width:120px;font-size:11px;text-align:center}.card img{border:3px solid transparent}
.pos img{border-color:#1a9c3a}.pos{font-weight:bold;color:#1a9c3a}
.query{width:260px;font-size:12px;background:#f7f7f7;padding:6px}
.txt{width:230px;font-size:11px;border:2px solid #eee;padding:4px}.txt.pos{border-color:#1a9c3a}
.ok{color:#1a9c3a}.bad{color:#c0392b}.note{color:#555;font-size:13px}
"""


# ------------------------------------------------------------------------------------- pictures
def to_pil(image: torch.Tensor | Image.Image) -> Image.Image:
    """A ``3 x H x W`` tensor in [0, 1] (clamped) or a PIL image -> PIL RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def data_uri(image: torch.Tensor | Image.Image, max_side: int | None = THUMB, fmt: str = "JPEG") -> str:
    """Embed a picture: downscale to ``max_side``, encode as JPEG (photos) or PNG (charts)."""
    img = to_pil(image)
    if max_side and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({"quality": 82} if fmt == "JPEG" else {"optimize": True}))
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_confusion(matrix: np.ndarray, labels: Sequence[str]) -> Image.Image:
    """The confusion matrix as a picture: rows = true class, columns = predicted, shaded by the
    share of the row (so rare classes are as visible as frequent ones); counts written when cells
    are big enough."""
    n = len(labels)
    cell = 26 if n <= 15 else 14 if n <= 50 else 8
    font = _font(max(7, min(11, cell - 3)))
    names_ = [lbl if len(lbl) <= 22 else lbl[:21] + "…" for lbl in labels]
    margin = max(int(font.getlength(s)) for s in names_) + 6 if names_ else 10
    width = height = margin + n * cell + 1
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = matrix / rows
    for i in range(n):
        for j in range(n):
            v = share[i, j]
            colour = (int(255 - 225 * v), int(255 - 170 * v), int(255 - 60 * v))
            x, y = margin + j * cell, margin + i * cell
            draw.rectangle([x, y, x + cell, y + cell], fill=colour, outline=(225, 225, 225))
            if cell >= 20 and matrix[i, j]:
                draw.text((x + cell / 2, y + cell / 2), str(matrix[i, j]), anchor="mm", font=font,
                          fill="white" if v > 0.5 else "black")  # fmt: skip
        lo, hi = margin + i * cell, margin + (i + 1) * cell
        draw.rectangle([lo, lo, hi, hi],
                       outline=(26, 156, 58))  # fmt: skip
    strip = Image.new("RGB", (margin, n * cell), "white")
    sdraw = ImageDraw.Draw(strip)
    for i, name in enumerate(names_):
        sdraw.text((margin - 3, i * cell + cell / 2), name, anchor="rm", font=font, fill="black")
    img.paste(strip, (0, margin))
    img.paste(strip.rotate(90, expand=True), (margin, 0))
    return img


def grid(rows: Sequence[Sequence[torch.Tensor]], tile: int = 96, gap: int = 2) -> Image.Image:
    """Tile images (rows x columns) into one picture, each downscaled to ``tile`` pixels."""
    n_rows, n_cols = len(rows), max((len(r) for r in rows), default=0)
    canvas = Image.new("RGB", (n_cols * (tile + gap), n_rows * (tile + gap)), "white")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            canvas.paste(
                to_pil(image).resize((tile, tile), Image.Resampling.LANCZOS),
                (j * (tile + gap), i * (tile + gap)),
            )
    return canvas


# ---------------------------------------------------------------------------------------- html
def esc(value: Any) -> str:
    return html.escape(str(value))


def short(text: str, limit: int = TEXT_CHARS) -> str:
    """Cut the middle of long texts: the start names the product, the end its colour (H&M)."""
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[: limit - tail - 3] + " … " + text[-tail:]


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.{digits}f}"
    return esc(value)


def table(header: Sequence[str], body: Sequence[Sequence[Any]], digits: Sequence[int] | None = None) -> str:
    """An HTML table; numbers are right-aligned with ``digits[column]`` decimals (2 by default),
    strings are inserted as they are (callers escape them)."""

    def cell(column: int, value: Any) -> str:
        if isinstance(value, (int, float)):
            places = digits[column] if digits is not None else 2
            return f'<td class="n">{fmt(value, places)}</td>'
        return f"<td>{value}</td>"

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(r)) + "</tr>" for r in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def with_std(metrics: dict[str, Any], name: str, scale: float = 1.0) -> str:
    value = metrics.get(name)
    if value is None:
        return "–"
    std = metrics.get(names.std(name))
    text = f"{value * scale:.2f}"
    return text + (f" ± {std * scale:.2f}" if std is not None else "")


# ------------------------------------------------------------------------------------- sections
def retrieval_section(run: EvalRun, thumb: Callable[[int], str]) -> str:
    out = run.retrieval
    if out is None:
        return ""
    m, p, cset = run.metrics, run.protocol["retrieval"], out.candidates
    k = cset.negatives
    body = [
        [d.upper()]
        + [with_std(m, names.recall(d, r, k), 100) for r in names.RECALL_KS]
        + [
            with_std(m, names.sum_recall(d, k)),
            with_std(m, names.mean_rank(d, k)),
            f"{m[names.tied(d, k)]:.2f}",
        ]
        for d in out.ranks
    ]
    tie_words = (
        "pessimistic: the positive's rank is 1 + the number of negatives scoring ≥ it, so ties never help "
        "(a model that scores every pair the same gets R@1 = 0)"
        if p["ties"] == "pessimistic"
        else "optimistic: a stable descending sort of each list as stored, the positive first "
        "(the released code's behaviour; ties favour the positive)"
    )
    source = (
        f"re-run from the candidate file <code>{esc(p['candidates_file'])}</code>"
        if p.get("candidates_file")
        else f"drawn with seed {p['seed']} ({p['repeats']} repeat(s), fresh draws each)"
    )
    per_repeat = cset.num_queries // max(1, len(cset.repeats))
    tied = ", ".join(f"{d.upper()} {m[names.tied(d, k)]:.2f}" for d in out.ranks)
    headline = run.scorers[0]

    def shown(score: float) -> str:
        if headline != "itm":
            return f"score {score:+.3g}"
        if run.options.itm_score != "log_odds":
            return f"p = {score:.4f}"
        return f"p = {1 / (1 + math.exp(-min(max(score, -700.0), 700.0))):.4f} (log-odds {score:+.3g})"

    words = " ".join(
        [
            f"<p>{per_repeat} query products per repeat (requested {p['queries']}), {source}, from split",
            f"<b>{esc(run.protocol['split'])}</b> of <code>{esc(run.protocol['catalogue'])}</code>.",
            f"Each query is ranked against 1 + {k} candidates: the query product itself and {k}",
            "<i>other products</i> (a different product id and a different text, compared lower-cased)",
            f"of the <i>same sub-category</i>. When a sub-category has fewer than {k}, the top-up rule",
            f"<b>{esc(p['topup'])}</b> applies ({esc(p['topup_words'])}): {cset.num_topped_up} queries were",
            f"topped up, {cset.num_skipped} skipped. TIR ranks the candidates' images for the query's text,",
            "ITR the candidates' texts for the query's image; both directions use the same lists.",
            f"Scores (the table): <b>{esc(headline)}</b>, {esc(p['score_words'][headline])};",
            f"{esc(run.protocol['precision'])} on {esc(run.protocol['device'])}.",
            f"Ties: {tie_words}; negatives tied with the positive per query: {tied}.",
            "R@k is the share of queries whose positive",
            f"ranks within the top k (shown in %); SumR = (R@5 + R@10) × 100; chance is R@k = k / {k + 1}.",
            f"Values are the mean{' ± std' if len(cset.repeats) > 1 else ''} over repeats.</p>",
        ]
    )
    timing = " ".join(
        [
            f"<p class='note'>Scored {out.pairs_needed} distinct image–text pairs ({out.pair_slots} slots;",
            f"a pair shared by several lists or both directions is scored once) in {out.seconds:.1f} s:",
            f"<b>{out.pairs_per_s:.1f} pairs/s</b> (batch {run.protocol['batch_size']}).</p>",
        ]
    )
    html_ = [
        "<h2>Retrieval (TIR, ITR)</h2>",
        table(
            ["direction", "R@1 %", "R@5 %", "R@10 %", "SumR", "mean rank", "tied negatives / query"], body
        ),  # preformatted
        words,
        timing,
    ]
    if len(run.scorers) > 1:
        rows = [
            [f"{name} {d.upper()}"] + [with_std(m, f"{scorer_tag(name)}_{names.recall(d, r, k)}", 100)
                                       for r in names.RECALL_KS]
            for name in run.scorers for d in out.ranks
        ]  # fmt: skip
        html_ += [
            "<h3>Every scorer on the same lists</h3>",
            table(["scorer, direction", "R@1 %", "R@5 %", "R@10 %"], rows),
            "<p class='note'>"
            + "; ".join(f"<b>{esc(n)}</b>: {esc(p['score_words'][n])}" for n in run.scorers)
            + ".</p>",
        ]
    queries = cset.repeats[0][: run.options.examples]
    if "tir" in out.scores and queries:
        html_.append("<h3>Text → image examples (top 5; the positive is outlined in green)</h3>")
        for c, s, rank in zip(queries, out.scores["tir"][0], out.ranks["tir"][0]):
            order = np.argsort(-s, kind="stable")[:5]
            cards = "".join(
                f'<div class="card{" pos" if j == c.positive_index else ""}">'
                f'<img src="{thumb(c.rows[j])}"><br>{shown(s[j])}</div>'
                for j in order
            )
            text = esc(short(run.catalogue.texts[c.query_row]))
            query = f"<b>query {esc(c.query)}</b> (positive rank {rank})<br>{text}"
            html_.append(f'<div class="row"><div class="query">{query}</div>{cards}</div>')
    if "itr" in out.scores and queries:
        html_.append("<h3>Image → text examples (top 5; the positive is outlined in green)</h3>")
        for c, s, rank in zip(queries, out.scores["itr"][0], out.ranks["itr"][0]):
            order = np.argsort(-s, kind="stable")[:5]
            texts = "".join(
                f'<div class="txt{" pos" if j == c.positive_index else ""}">{shown(s[j])}<br>'
                f"{esc(short(run.catalogue.texts[c.rows[j]], 130))}</div>"
                for j in order
            )
            html_.append(
                f'<div class="row"><div class="card"><img src="{thumb(c.query_row)}"><br>query {esc(c.query)}'
                f"<br>positive rank {rank}</div>{texts}</div>"
            )
    return "\n".join(html_)


def recognition_section(run: EvalRun, thumb: Callable[[int], str]) -> str:
    out = run.recognition
    if out is None:
        return ""
    titles = {"category": "Main category (M-CR)", "subcategory": "Sub-category (S-CR)"}
    body = [
        [
            titles[f],
            100 * r.accuracy,
            r.macro_f1,
            r.sumc,
            r.items,
            sum(out.unknown[f].values()),
            len(r.labels),
        ]
        for f, r in out.reports.items()
        if r is not None
    ]
    header = ["task", "accuracy %", "macro-F1", "SumC", "items scored", "items with unseen label", "classes"]
    html_ = [
        "<h2>Category recognition (M-CR, S-CR)</h2>",
        table(header, body, digits=[0, 2, 3, 2, 0, 0, 0]),
        " ".join(
            [
                "<p>Each item (image + text) is classified by the fine-tuned heads. Labels are mapped",
                "through",
                "the checkpoint's label maps; items whose label the checkpoint never saw in training have no",
                "output unit and are <b>excluded</b> from accuracy and F1 (listed below). Macro-F1 is",
                "scikit-learn's: the mean per-class F1 over the classes present in the truth or the",
                "predictions. SumC = (accuracy + macro-F1) × 100.</p>",
            ]
        ),
    ]
    for f, rep in out.reports.items():
        unknown = out.unknown[f]
        if unknown:
            listed = ", ".join(f"{esc(n)} ({c})" for n, c in sorted(unknown.items()))
            html_.append(f"<p class='note'>{titles[f]}: labels unseen in training: {listed}.</p>")
        if rep is None:
            continue
        labels = [out.class_names[f][i] for i in rep.labels]
        rows = [
            [esc(labels[i]), c.support, c.predicted, c.precision, c.recall, c.f1]
            for i, c in sorted(enumerate(rep.per_class), key=lambda ic: -ic[1].support)
        ]
        html_.append(
            f"<details><summary>{titles[f]}: per-class F1 ({len(rows)} classes)</summary>"
            + table(
                ["class", "true items", "predicted", "precision", "recall", "F1"], rows, [0, 0, 0, 3, 3, 3]
            )
            + "</details>"
        )
        picture = data_uri(draw_confusion(rep.confusion, labels), max_side=None, fmt="PNG")
        html_.append(
            f"<h3>{titles[f]}: confusion matrix</h3><p class='note'>Rows: true class; columns: predicted; "
            f"shade: share of the row; the diagonal is outlined.</p><img src='{picture}'>"
        )
    count = min(len(out.rows), 2 * run.options.examples)
    if count:
        html_.append("<h3>Examples (predicted, with its probability; true label below)</h3><div class='row'>")
        spread = np.linspace(0, len(out.rows) - 1, count).round().astype(int)
        for i in dict.fromkeys(spread.tolist()):  # items spread over the split, not neighbours
            row = out.rows[i]
            lines = []
            for f in out.predictions:
                pred, true = int(out.predictions[f][i]), int(out.targets[f][i])
                class_names = out.class_names[f]
                raw = (run.catalogue.categories if f == "category" else run.catalogue.subcategories)[row]
                true_name = class_names[true] if true >= 0 else f"{raw} (unseen in training)"
                lines.append(
                    f"<span class='{'ok' if pred == true else 'bad'}'>{esc(class_names[pred])}</span> "
                    f"({out.confidences[f][i]:.2f})<br><small>true: {esc(true_name)}</small>"
                )
            html_.append(
                f"<div class='txt'><img src='{thumb(row)}'><br>{'<br>'.join(lines)}<br>"
                f"<small>{esc(short(run.catalogue.texts[row], 100))}</small></div>"
            )
        html_.append("</div>")
    return "\n".join(html_)


def generation_section(run: EvalRun) -> str:
    out = run.generation
    if out is None:
        return ""
    m, p = run.metrics, run.protocol["generation"]
    body = [
        [s, out.masked_fraction[s]]
        + [m[names.generation(stat, s, masked)] for masked in (False, True) for stat in ("psnr", "ssim")]
        for s in out.strategies
    ]
    header = ["strategy", "masked share", "PSNR dB", "SSIM", "PSNR (masked) dB", "SSIM (masked)"]
    guided = " with the text as guidance" if p["text"] else " without the text"
    html_ = [
        "<h2>Masked image generation (MIG)</h2>",
        table(header, body, digits=[0, 3, 2, 4, 2, 4]),
        " ".join(
            [
                f"<p>{len(out.rows)} images of the split (drawn with seed {p['seed']})",
                f"at {p['image_size']} px",
                f"are masked with each strategy (ratio {p['ratio']}, unit {p['unit']} px; masks seeded per",
                "image), masked pixels set to the model's [ZERO], and reconstructed by the MIR",
                f"decoder{guided}.",
                "Reconstructions are clamped to [0, 1]; nothing is pasted back from the original. PSNR uses",
                "peak 1.0; SSIM is Wang et al. (2004) with an 11 × 11 Gaussian window (σ = 1.5) per channel.",
                "The masked variants use only the masked pixels (PSNR) or the SSIM windows centred on masked",
                "pixels. Values are means over images.</p>",
            ]
        ),
    ]
    for s in out.strategies:
        ex = out.examples.get(s) or []
        if not ex:
            continue
        picture = data_uri(grid([[e[0] for e in ex], [e[1] for e in ex], [e[2] for e in ex]]), max_side=None)
        html_.append(
            f"<h3>{esc(s)}</h3><p class='note'>Rows: original, masked input, reconstruction.</p>"
            f"<img src='{picture}'>"
        )
    return "\n".join(html_)


def training_section(run: EvalRun) -> str:
    """Each objective's loss by step for the training runs behind the checkpoint."""
    runs = {}
    for path in run.options.training_logs:
        try:
            runs[Path(path).parent.name or str(path)] = read_losses(path)
        except (OSError, ValueError) as err:
            return f"<h2>Training</h2><p class='note'>learning curves unavailable: {esc(err)}</p>"
    runs = {name: series for name, series in runs.items() if series}
    if not runs:
        return ""
    picture = data_uri(draw_curves(runs), max_side=None, fmt="PNG")
    return (
        "<h2>Training: learning curves</h2>"
        f"<img src='{picture}' alt='loss by step for each objective'>"
        "<p class='note'>Each objective's training loss by step (window means as logged). Chance levels: ITM "
        "ln 2 = 0.693 with the paper's 50 % random negatives, 0.637 with one positive and two mined "
        "negatives; ITC ln(batch).</p>"
    )


def render_report(run: EvalRun) -> str:
    """The whole page as one string (no external resources)."""
    cache: dict[int, str] = {}

    def thumb(row: int) -> str:
        if row not in cache:
            cache[row] = data_uri(run.catalogue[row].image)
        return cache[row]

    prot = run.protocol
    header = table(
        ["", ""],
        [
            ["checkpoint", f"<code>{esc(prot.get('checkpoint') or '(in memory)')}</code>"],
            ["model", esc(prot["model"])],
            [
                "catalogue",
                f"<code>{esc(prot['catalogue'])}</code>, split {esc(prot['split'])} ({prot['items']} items)",
            ],
            ["device / precision", f"{esc(prot['device'])} / {esc(prot['precision'])}"],
            ["image size / resize", f"{prot['image_size']} px / {esc(prot['resize'])}"],
            ["tasks", esc(", ".join(prot["tasks"]))],
            ["skipped tasks", esc("; ".join(f"{k}: {v}" for k, v in run.skipped.items()) or "none")],
            ["seconds per task", esc(", ".join(f"{k} {v:.1f}" for k, v in run.seconds.items()))],
            ["versions", esc(f"mvlt {prot['mvlt_version']}, torch {prot['torch_version']}")],
        ],
    )
    sections = [
        training_section(run),
        retrieval_section(run, thumb),
        recognition_section(run, thumb),
        generation_section(run),
    ]
    return page("MVLT evaluation", header + "\n".join(s for s in sections if s))


def page(title: str, body: str) -> str:
    """A self-contained page with this report's style: ``title`` as its heading, then ``body``."""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{body}</body></html>\n"
    )
