"""Every metric name the evaluator writes, defined in one place.

Names state the protocol so numbers from different protocols cannot be confused in a table:
``tir_r5_1p100_subcat`` is text-to-image R@5 with 1 positive + 100 negatives drawn from the same
sub-category. R@k values are fractions in [0, 1]; SumR and SumC are in points, as in the paper.
"""

from __future__ import annotations

DIRECTIONS = ("tir", "itr")
"""Text-to-image (a text queries images) and image-to-text retrieval."""
RECALL_KS = (1, 5, 10)
POOL = "subcat"
"""Negatives come from the query's sub-category (topped up as the protocol says)."""
RECOGNITION_FIELDS = {"category": "mcr", "subcategory": "scr"}
"""Main-category (M-CR) and sub-category (S-CR) recognition."""


def protocol_tag(negatives: int) -> str:
    """``1p100_subcat``: one positive plus ``negatives`` negatives from the same sub-category."""
    return f"1p{negatives}_{POOL}"


def retrieval(direction: str, stat: str, negatives: int) -> str:
    """``tir_r1_1p100_subcat``, ``itr_sumr_1p100_subcat``, ``tir_mean_rank_1p100_subcat``, ..."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown retrieval direction {direction!r}; expected one of {DIRECTIONS}")
    return f"{direction}_{stat}_{protocol_tag(negatives)}"


def recall(direction: str, k: int, negatives: int) -> str:
    return retrieval(direction, f"r{k}", negatives)


def sum_recall(direction: str, negatives: int) -> str:
    """SumR = (R@5 + R@10) x 100 (the paper's Table 2)."""
    return retrieval(direction, "sumr", negatives)


def mean_rank(direction: str, negatives: int) -> str:
    """Mean rank of the positive (chance: (K + 2) / 2)."""
    return retrieval(direction, "mean_rank", negatives)


def tied(direction: str, negatives: int) -> str:
    """Mean number of negatives per query scoring exactly the positive's score (should be ~0)."""
    return retrieval(direction, "tied", negatives)


def retrieval_count(stat: str, negatives: int) -> str:
    """Counts shared by both directions (they use the same candidate lists):
    ``retrieval_queries_1p100_subcat``, ``retrieval_topped_up_...``, ``retrieval_skipped_...``."""
    return f"retrieval_{stat}_{protocol_tag(negatives)}"


RETRIEVAL_PAIRS_PER_S = "retrieval_pairs_per_s"
RETRIEVAL_PAIRS_SCORED = "retrieval_pairs_scored"


def std(name: str) -> str:
    """The standard deviation over repeats of metric ``name`` (written only when repeats > 1)."""
    return f"{name}_std"


def stderr(name: str) -> str:
    """The binomial standard error of R@k, sqrt(p (1 - p) / queries), over all queries."""
    return f"{name}_se"


def recognition(field: str, stat: str) -> str:
    """``mcr_acc``, ``mcr_macro_f1``, ``mcr_sumc``, ``scr_acc``, ``scr_unknown_items``, ..."""
    if field not in RECOGNITION_FIELDS:
        raise ValueError(f"unknown recognition field {field!r}; expected one of {tuple(RECOGNITION_FIELDS)}")
    return f"{RECOGNITION_FIELDS[field]}_{stat}"


def generation(stat: str, strategy: str, masked: bool = False) -> str:
    """``mig_psnr_random_grid`` (whole image) or ``mig_ssim_masked_center`` (masked region only)."""
    return f"mig_{stat}_{'masked_' if masked else ''}{strategy}"


MIG_IMAGES = "mig_images"
