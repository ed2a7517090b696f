"""Evaluation of the downstream tasks: retrieval (TIR/ITR), recognition (M-CR/S-CR), masked image
generation (MIG), and the HTML report. The model never imports this package.

Entry points: :func:`evaluate` (all tasks, writes ``metrics.json`` and ``report.html``) and the
``mvlt evaluate`` command (:mod:`mvlt.eval.cli`). Metric names live in :mod:`mvlt.eval.names`.
"""

from .generation import psnr, ssim, ssim_map
from .recognition import classification_report, macro_f1
from .retrieval import (
    CandidateList,
    CandidateSet,
    RetrievalProtocol,
    load_candidates,
    positive_rank,
    run_retrieval,
    sample_candidates,
    save_candidates,
)
from .run import EvalOptions
from .runner import TASKS, evaluate, format_table
from .scoring import model_scorer

__all__ = [
    "TASKS",
    "CandidateList",
    "CandidateSet",
    "EvalOptions",
    "RetrievalProtocol",
    "classification_report",
    "evaluate",
    "format_table",
    "load_candidates",
    "macro_f1",
    "model_scorer",
    "positive_rank",
    "psnr",
    "run_retrieval",
    "sample_candidates",
    "save_candidates",
    "ssim",
    "ssim_map",
]
