"""The synthetic catalogue: procedurally drawn products with matching English descriptions.

Why it exists: tests and the demo need a catalogue that is generated in seconds, stored nowhere,
identical on every machine (a pure function of the seed) and *learnable* by a tiny model on a
CPU: every attribute a description names is drawn large enough to see at 64-128 px.

- 7 categories (t-shirt, dress, trousers, skirt, jacket, shoes, bag), 3 sub-categories each that
  change the silhouette (sleeve length, hem length, leg length, jacket type, shoe type, bag type).
- Fine attributes: neckline (crew / v-neck), sleeves, fit (slim / wide-leg), skirt shape
  (a-line / pencil), hood / collar, sole colour, trim colour.
- 12 named colours, patterns solid / stripes / dots / checks in a second named colour. The main
  colour always covers most of the garment, so the described colour is the dominant one.
- Products come in 2-4 colour variants (H&M's convention: each variant has its own
  ``product_id``; variants share a ``group`` and a description that differs only in colour).
- A train/test split by product group (variants never straddle it).

Metadata is generated eagerly (milliseconds); images are drawn on access, seeded by
``(seed, item)``, so the catalogue costs no memory and no disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import errors as E
from .catalogue import Catalogue
from .errors import DataError, handle_bad_row
from .labels import LabelMaps

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 40),
    "orange": (245, 130, 20),
    "yellow": (245, 210, 40),
    "green": (40, 150, 60),
    "teal": (0, 150, 150),
    "blue": (40, 90, 220),
    "navy": (20, 30, 90),
    "purple": (120, 50, 160),
    "pink": (240, 120, 180),
    "brown": (120, 70, 30),
    "black": (25, 25, 25),
    "white": (252, 252, 252),
}
TRIM_COLOURS: dict[str, tuple[int, int, int]] = {"black": (25, 25, 25), "white": (252, 252, 252),
                                                 "tan": (200, 150, 90)}  # fmt: skip
BACKGROUND = (226, 224, 220)
OUTLINE = (70, 70, 70)
PATTERNS = ("solid", "stripes", "dots", "checks")
PATTERN_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
COLOUR_JITTER = 6

# category -> sub-categories (the silhouette) and fine attributes (name -> choices).
TAXONOMY: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "t-shirt": (("short-sleeve t-shirt", "long-sleeve t-shirt", "tank top"),
                {"neckline": ("crew", "v-neck")}),
    "dress": (("mini dress", "midi dress", "maxi dress"),
              {"sleeves": ("sleeveless", "short", "long"), "neckline": ("crew", "v-neck")}),
    "trousers": (("shorts", "cropped trousers", "full-length trousers"), {"fit": ("slim", "wide-leg")}),
    "skirt": (("mini skirt", "midi skirt", "maxi skirt"), {"shape": ("a-line", "pencil")}),
    "jacket": (("jacket", "coat", "gilet"), {"top": ("hood", "collar")}),
    "shoes": (("sneakers", "boots", "heels"), {"sole": ("white", "black")}),
    "bag": (("tote bag", "shoulder bag", "clutch"), {"trim": ("black", "tan")}),
}  # fmt: skip
CATEGORIES = tuple(TAXONOMY)
SUBCATEGORIES = tuple(s for subs, _ in TAXONOMY.values() for s in subs)


@dataclass(frozen=True)
class Product:
    """Everything an item's text and image are made from."""

    category: str
    subcategory: str
    colour: str
    pattern: str
    pattern_colour: str | None
    attrs: tuple[tuple[str, str], ...]
    template: int

    def attributes(self) -> dict[str, Any]:
        fixed = ("category", "subcategory", "colour", "pattern", "pattern_colour")
        return {**{name: getattr(self, name) for name in fixed}, **dict(self.attrs)}


# ------------------------------------------------------------------------------------ descriptions
_PLURAL = {"shorts", "cropped trousers", "full-length trousers", "sneakers", "boots", "heels"}


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _noun_and_features(p: Product) -> tuple[str, list[str]]:
    """The product noun (with shape adjectives) and its feature phrases ("short sleeves", ...)."""
    a = dict(p.attrs)
    neck = {"crew": "a crew neck", "v-neck": "a v-neck"}
    if p.category == "t-shirt":
        sleeves = {"short-sleeve t-shirt": ["short sleeves"], "long-sleeve t-shirt": ["long sleeves"]}
        noun = "tank top" if p.subcategory == "tank top" else "t-shirt"
        return noun, [*sleeves.get(p.subcategory, []), neck[a["neckline"]]]
    if p.category == "dress":
        if a["sleeves"] == "sleeveless":
            return f"sleeveless {p.subcategory}", [neck[a["neckline"]]]
        return p.subcategory, [f"{a['sleeves']} sleeves", neck[a["neckline"]]]
    if p.category == "trousers":
        fit = "slim-fit" if a["fit"] == "slim" else "wide-leg"
        return f"{fit} {p.subcategory}", []
    if p.category == "skirt":
        return f"{a['shape']} {p.subcategory}", []
    if p.category == "jacket":
        return p.subcategory, [f"a {a['top']}"] + ([] if p.subcategory == "gilet" else ["long sleeves"])
    if p.category == "shoes":
        return p.subcategory, [f"a {a['sole']} sole"]
    part = {"tote bag": "handles", "shoulder bag": "a strap", "clutch": "a flap"}[p.subcategory]
    return p.subcategory, [f"{a['trim']} {part}" if part == "handles" else f"a {a['trim']} {part[2:]}"]


def describe(p: Product) -> str:
    """An English description naming the colour, pattern, sub-type and fine attributes."""
    noun, features = _noun_and_features(p)
    colour, second, plural = p.colour, p.pattern_colour, p.subcategory in _PLURAL
    pattern = {"stripes": f"{second} stripes", "dots": f"{second} polka dots", "checks": f"{second} checks"}
    adjective = {"solid": "plain", "stripes": "striped", "dots": "polka-dot", "checks": "checked"}[p.pattern]
    lead = "a pair of" if plural else _article(colour)
    t = p.template
    if t == 0:  # "A red t-shirt with white stripes, short sleeves and a crew neck."
        parts = ([pattern[p.pattern]] if p.pattern != "solid" else []) + features
        sentences = [f"{lead} {colour} {noun}" + (f" with {_join(parts)}" if parts else "")]
    elif t == 1:  # "Striped t-shirt in red and white with short sleeves and a crew neck."
        colours = f"{colour} and {second}" if p.pattern != "solid" else colour
        sentences = [f"{adjective} {noun} in {colours}" + (f" with {_join(features)}" if features else "")]
    elif t == 2:  # "This red t-shirt has short sleeves and a crew neck. Pattern: white stripes."
        verb, this = ("have", "these") if plural else ("has", "this")
        sentences = [f"{this} {colour} {noun} {verb} " + (_join(features) if features else "a simple cut")]
        sentences.append(f"pattern: {pattern[p.pattern]}" if p.pattern != "solid" else "solid colour")
    else:  # "Red t-shirt. White stripes. Short sleeves, crew neck."
        sentences = [f"{colour} {noun}"] + ([pattern[p.pattern]] if p.pattern != "solid" else [])
        if features:
            sentences.append(", ".join(f.removeprefix("a ") for f in features))
    return " ".join(s[0].upper() + s[1:] + "." for s in sentences)


# ---------------------------------------------------------------------------------------- drawing
Op = tuple[str, str, Any]  # (layer, shape kind, geometry in unit coordinates)


def _mirror(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(1.0 - x, y) for x, y in points]


def _sleeves(shoulder: tuple[float, float], kind: str, long_end: float = 0.78) -> list[Op]:
    x, y = shoulder
    if kind == "short":
        left = [(x, y), (x - 0.13, y + 0.18), (x - 0.05, y + 0.23), (x, y + 0.14)]
    elif kind == "long":
        left = [(x, y), (x - 0.18, long_end), (x - 0.09, long_end + 0.02), (x, y + 0.18)]
    else:
        return []
    return [("body", "poly", left), ("body", "poly", _mirror(left))]


def _neck(kind: str, y: float, half: float = 0.08) -> Op:
    if kind == "crew":
        return ("cut", "ellipse", (0.5 - half, y - 0.06, 0.5 + half, y + 0.06))
    return ("cut", "poly", [(0.5 - half, y - 0.01), (0.5 + half, y - 0.01), (0.5, y + 0.15)])


def garment_ops(p: Product) -> list[Op]:
    """The drawing of a product in unit coordinates (0..1), layer by layer."""
    a, sub = dict(p.attrs), p.subcategory
    if p.category == "t-shirt":
        if sub == "tank top":
            straps = [("body", "rect", (0.36, 0.15, 0.43, 0.32)), ("body", "rect", (0.57, 0.15, 0.64, 0.32))]
            return [*straps, ("body", "rect", (0.32, 0.30, 0.68, 0.86)), _neck(a["neckline"], 0.30, 0.09)]
        kind = "short" if sub.startswith("short") else "long"
        return [
            *_sleeves((0.31, 0.22), kind),
            ("body", "rect", (0.30, 0.20, 0.70, 0.86)),
            _neck(a["neckline"], 0.20),
        ]
    if p.category == "dress":
        hem = {"mini dress": 0.58, "midi dress": 0.74, "maxi dress": 0.93}[sub]
        half = 0.14 + 0.30 * (hem - 0.40)
        skirt = [(0.36, 0.40), (0.64, 0.40), (0.5 + half, hem), (0.5 - half, hem)]
        return [*_sleeves((0.37, 0.12), a["sleeves"], 0.62), ("body", "rect", (0.36, 0.10, 0.64, 0.42)),
                ("body", "poly", skirt), _neck(a["neckline"], 0.10, 0.07)]  # fmt: skip
    if p.category == "trousers":
        hem = {"shorts": 0.44, "cropped trousers": 0.72, "full-length trousers": 0.92}[sub]
        outer, inner = (0.31, 0.47) if a["fit"] == "slim" else (0.20, 0.495)
        left = [(0.31, 0.10), (0.5, 0.10), (0.5, 0.36), (inner, hem), (outer, hem)]
        return [
            ("body", "poly", left),
            ("body", "poly", _mirror(left)),
            ("line", "line", [(0.31, 0.15), (0.69, 0.15)]),
        ]
    if p.category == "skirt":
        hem = {"mini skirt": 0.50, "midi skirt": 0.70, "maxi skirt": 0.90}[sub]
        half = 0.15 + 0.33 * (hem - 0.2) if a["shape"] == "a-line" else 0.15
        return [("body", "poly", [(0.35, 0.18), (0.65, 0.18), (0.5 + half, hem), (0.5 - half, hem)]),
                ("line", "line", [(0.35, 0.23), (0.65, 0.23)])]  # fmt: skip
    if p.category == "jacket":
        hem = 0.92 if sub == "coat" else 0.64
        ops: list[Op] = []
        if a["top"] == "hood":
            ops += [
                ("body", "ellipse", (0.37, 0.06, 0.63, 0.30)),
                ("dark", "ellipse", (0.43, 0.11, 0.57, 0.25)),
            ]
        ops += [] if sub == "gilet" else _sleeves((0.31, 0.22), "long", 0.72)
        ops += [("body", "rect", (0.29, 0.20, 0.71, hem)), ("line", "line", [(0.5, 0.24), (0.5, hem)])]
        if a["top"] == "collar":
            ops += [("line", "outline", [(0.40, 0.20), (0.5, 0.20), (0.5, 0.36)]),
                    ("line", "outline", [(0.60, 0.20), (0.5, 0.20), (0.5, 0.36)])]  # fmt: skip
        return ops
    if p.category == "shoes":
        if sub == "sneakers":
            upper = [(0.12, 0.64), (0.16, 0.46), (0.44, 0.42), (0.62, 0.52), (0.86, 0.56), (0.90, 0.64)]
            return [("body", "poly", upper), ("trim", "rect", (0.10, 0.64, 0.92, 0.72))]
        if sub == "boots":
            upper = [(0.18, 0.14), (0.46, 0.14), (0.48, 0.48), (0.82, 0.56), (0.88, 0.68), (0.16, 0.68)]
            return [("body", "poly", upper), ("trim", "rect", (0.14, 0.68, 0.90, 0.76))]
        upper = [
            (0.14, 0.50),
            (0.30, 0.40),
            (0.48, 0.48),
            (0.86, 0.64),
            (0.84, 0.70),
            (0.56, 0.66),
            (0.16, 0.58),
        ]
        heel = [(0.14, 0.56), (0.24, 0.58), (0.22, 0.80), (0.17, 0.80)]
        return [("body", "poly", upper), ("trim", "poly", heel), ("trim", "rect", (0.56, 0.66, 0.88, 0.72))]
    if sub == "tote bag":
        return [("trim", "arc", (0.30, 0.16, 0.48, 0.60)), ("trim", "arc", (0.52, 0.16, 0.70, 0.60)),
                ("body", "poly", [(0.22, 0.38), (0.78, 0.38), (0.84, 0.88), (0.16, 0.88)])]  # fmt: skip
    if sub == "shoulder bag":
        return [("trim", "arc", (0.26, 0.08, 0.74, 0.92)), ("body", "rect", (0.22, 0.48, 0.78, 0.84))]
    return [
        ("body", "rect", (0.12, 0.38, 0.88, 0.70)),
        ("trim", "poly", [(0.12, 0.38), (0.88, 0.38), (0.5, 0.58)]),
    ]


def _pattern(
    size: int, p: Product, main: np.ndarray, second: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """An RGB canvas filled with the product's pattern; the main colour covers most of it."""
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = main
    if p.pattern == "solid":
        return out
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    off_y, off_x = rng.uniform(0, size, 2)
    if p.pattern == "stripes":
        period = size / 9.0
        on = ((ys + off_y) % period) < period / 3.0
    elif p.pattern == "dots":
        period = size / 8.0
        dy = (ys + off_y) % period - period / 2
        dx = (xs + off_x) % period - period / 2
        on = dy * dy + dx * dx < (period * 0.24) ** 2
    else:  # checks: windowpane lines in the second colour
        period = size / 7.0
        width = period * 0.2
        on = (((ys + off_y) % period) < width) | (((xs + off_x) % period) < width)
    out[on] = second
    return out


def _jittered(colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.asarray(colour) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255).astype(
        np.uint8
    )


def render(p: Product, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw product ``p`` on a plain background, with a small random placement and colour jitter."""
    return render_layers(p, size, rng)[0]


def render_layers(
    p: Product, size: int, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """:func:`render`, plus the boolean masks of the garment body and of its trim (sole, handles)."""
    scale = rng.uniform(0.88, 1.0)
    dx, dy = rng.uniform(-0.04, 0.04, 2)

    def xy(points: Sequence[float]) -> list[float]:
        return [((v - 0.5) * scale + 0.5 + (dx if i % 2 == 0 else dy)) * size for i, v in enumerate(points)]

    body, trim = Image.new("L", (size, size), 0), Image.new("L", (size, size), 0)
    lines: list[tuple[str, Any]] = []
    dark: list[Any] = []
    width = max(1, round(size * 0.03))
    for layer, kind, geom in garment_ops(p):
        if layer in ("line", "dark"):
            (lines if layer == "line" else dark).append((kind, geom))
            continue
        draw = ImageDraw.Draw(trim if layer == "trim" else body)
        fill = 0 if layer == "cut" else 255
        flat = [c for pt in geom for c in pt] if kind in ("poly",) else list(geom)
        if kind == "poly":
            draw.polygon(xy(flat), fill=fill)
        elif kind == "rect":
            draw.rectangle(xy(flat), fill=fill)
        elif kind == "ellipse":
            draw.ellipse(xy(flat), fill=fill)
        elif kind == "arc":
            draw.arc(xy(flat), 180, 360, fill=fill, width=width)
    body_arr = np.asarray(body) > 0
    trim_arr = np.asarray(trim) > 0
    main, second = _jittered(PALETTE[p.colour], rng), _jittered(PALETTE[p.pattern_colour or p.colour], rng)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    canvas[body_arr] = _pattern(size, p, main, second, rng)[body_arr]
    trim_name = next((v for k, v in p.attrs if k in ("sole", "trim")), "black")
    canvas[trim_arr] = _jittered(TRIM_COLOURS[trim_name], rng)
    shape = Image.fromarray(((body_arr | trim_arr) * 255).astype(np.uint8))
    edges = shape.filter(ImageFilter.FIND_EDGES)
    if size >= 128:
        edges = edges.filter(ImageFilter.MaxFilter(3))
    canvas[np.asarray(edges) > 0] = OUTLINE
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    thin = max(1, round(size / 110))
    for _, geom in dark:
        draw.ellipse(xy(list(geom)), fill=OUTLINE)
    for _, geom in lines:
        flat = [c for pt in geom for c in pt]
        draw.line(xy(flat), fill=OUTLINE, width=thin)
    return img, body_arr, trim_arr


# ---------------------------------------------------------------------------------------- catalogue
def generate_products(
    num_products: int, seed: int, test_fraction: float
) -> tuple[list[Product], list[int], list[str]]:
    """Products (one per item), their group number and split, as a pure function of the seed."""
    rng = np.random.default_rng([seed, 0x5EED])
    colours = list(PALETTE)
    products: list[Product] = []
    groups: list[int] = []
    splits: list[str] = []
    group = 0
    while len(products) < num_products:
        category = CATEGORIES[rng.integers(len(CATEGORIES))]
        subs, fine = TAXONOMY[category]
        subcategory = subs[rng.integers(len(subs))]
        attrs = tuple((name, choices[rng.integers(len(choices))]) for name, choices in fine.items())
        pattern = PATTERNS[rng.choice(len(PATTERNS), p=PATTERN_WEIGHTS)]
        template = int(rng.integers(4))
        pattern_colour = colours[rng.integers(len(colours))] if pattern != "solid" else None
        # The main colour must stand out from the pattern and from the trim/sole drawn next to it.
        taken = {pattern_colour} | {v for k, v in attrs if k in ("sole", "trim")}
        allowed = [c for c in colours if c not in taken]
        n_variants = int(rng.integers(2, 5))
        variant_colours = rng.choice(len(allowed), size=n_variants, replace=False)
        split = "test" if rng.random() < test_fraction else "train"
        for c in variant_colours:
            if len(products) == num_products:
                break
            products.append(
                Product(category, subcategory, allowed[int(c)], pattern, pattern_colour, attrs, template)
            )
            groups.append(group)
            splits.append(split)
        group += 1
    return products, groups, splits


class SyntheticCatalogue(Catalogue):
    """Procedural fashion catalogue (see the module docstring), deterministic from ``seed``.

    Options:
        split: ``"train"``, ``"test"`` or None (all items).
        num_products: number of items over both splits (each colour variant is one product id;
            default 2000, generated in milliseconds; images are drawn when accessed).
        seed: the catalogue is a pure function of it.
        image_size: side of the drawn square images in pixels (default 256).
        test_fraction: share of product groups in the test split (default 0.2).
        skip_bad_rows: accepted for a uniform interface (no row here is ever bad).
        label_maps: items whose labels are not in these maps are bad rows (``unknown_label``).
    """

    def __init__(
        self,
        split: str | None = None,
        *,
        num_products: int = 2000,
        seed: int = 0,
        image_size: int = 256,
        test_fraction: float = 0.2,
        skip_bad_rows: bool = False,
        label_maps: LabelMaps | None = None,
    ) -> None:
        if split not in (None, "train", "test"):
            raise ValueError(f"the synthetic catalogue has splits 'train' and 'test', not {split!r}")
        if num_products < 1 or image_size < 8:
            raise ValueError(f"need num_products >= 1 and image_size >= 8, got {num_products}, {image_size}")
        super().__init__(
            f"synthetic(seed={seed}, num_products={num_products}, image_size={image_size})", split
        )
        self.seed, self.image_size = int(seed), int(image_size)
        products, groups, splits = generate_products(num_products, self.seed, test_fraction)
        self.item_ids: list[int] = []  # index over both splits: what the image is seeded by
        self.products: list[Product] = []
        variant = 0
        for i, (p, g, s) in enumerate(zip(products, groups, splits)):
            variant = variant + 1 if i and groups[i - 1] == g else 1
            if split is not None and s != split:
                continue
            if label_maps is not None and not label_maps.contains(p.category, p.subcategory):
                detail = f"unknown label(s) category {p.category!r} / subcategory {p.subcategory!r}"
                handle_bad_row(
                    DataError(self.source, f"item {i}", E.UNKNOWN_LABEL, detail), skip_bad_rows, self.skips
                )
                continue
            self.item_ids.append(i)
            self.products.append(p)
            self.texts.append(describe(p))
            self.categories.append(p.category)
            self.subcategories.append(p.subcategory)
            self.product_ids.append(f"{g + 1:07d}{variant:03d}")
            self.groups.append(f"{g + 1:07d}")
        self._finish_open()

    @property
    def attributes(self) -> list[dict[str, Any]]:
        """Per item: category, subcategory, colour, pattern, pattern_colour and fine attributes."""
        return [p.attributes() for p in self.products]

    def row_name(self, index: int) -> str:
        return f"item {self.item_ids[index]}"

    def load_image(self, index: int) -> Image.Image:
        return self.draw(index)[0]

    def draw(self, index: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
        """Item ``index``'s image with the masks of its garment body and trim (for checks and demos)."""
        i = self._check_index(index)
        rng = np.random.default_rng([self.seed, self.item_ids[i], 0x1A6E])
        return render_layers(self.products[i], self.image_size, rng)
