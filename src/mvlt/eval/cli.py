"""``mvlt evaluate``: the four downstream tasks on a checkpoint, with metrics.json and report.html."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from ..exits import ERRORS, UsageError, count_arg, fail
from ..masking import IMAGE_MASK_STRATEGIES
from .context import PRECISIONS
from .retrieval import TIE_RULES, TOPUP_RULES, RetrievalProtocol
from .scoring import SCORES

log = logging.getLogger("mvlt.eval")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="retrieval (TIR/ITR), recognition (M-CR/S-CR) and masked image generation; writes a report",
        description="Evaluate a checkpoint on a catalogue split. Writes metrics.json, report.html, "
        "retrieval_candidates.json and recognition.json into --out and prints a short table.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory (save_pretrained)")
    p.add_argument(
        "--data", required=True, help="catalogue: a manifest, a folder, a Fashion-Gen .h5 or 'synthetic'"
    )
    p.add_argument(
        "--task",
        default="all",
        help="retrieval, recognition, generation, all (these three), or a comma list; tagging (alone: "
        "attribute tags against the catalogue's columns, the options under 'tagging')",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--split", default=None, help="split ('all': every row; default test, else validation)")
    p.add_argument("--vocab", type=Path, default=None, help="vocab.txt, when the checkpoint has no tokenizer")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip unreadable catalogue rows (counted)")
    r = p.add_argument_group("retrieval (1 + K protocol)")
    r.add_argument("--queries", type=count_arg, default=1000, help="query products per repeat (default 1000)")
    r.add_argument("--repeats", type=count_arg, default=1, help="repeats with fresh draws (default 1)")
    r.add_argument("--negatives", type=count_arg, default=100, help="negatives per query, K (default 100)")
    r.add_argument(
        "--topup", choices=TOPUP_RULES, default="category", help="when a sub-category has < K others"
    )
    r.add_argument(
        "--ties", choices=TIE_RULES, default="pessimistic", help="how tied scores rank the positive"
    )
    r.add_argument("--candidates", type=Path, default=None, help="re-run these candidate lists (JSON)")
    r.add_argument(
        "--score",
        default="auto",
        help="retrieval scorer(s): itc+itm, itc, itm or a comma list, the first the headline (default "
        "auto: all three, itc+itm first, when the checkpoint has ITC heads, else itm)",
    )
    r.add_argument(
        "--rerank-top", type=count_arg, default=16, help="itc+itm: ITM re-ranks the ITC top K (default 16)"
    )
    r.add_argument(
        "--mirror", action="store_true", help="ITC: embed each photo with its mirror image (two image passes)"
    )
    r.add_argument(
        "--hub-bank", type=int, default=0, metavar="N",
        help="ITC: subtract each candidate's pull on N rows of --hub-split (hubs corrected; 0: off)",
    )  # fmt: skip
    r.add_argument(
        "--hub-split", default="train", help="the split the hub bank is drawn from (default train)"
    )
    r.add_argument(
        "--itm-score",
        choices=SCORES,
        default="log_odds",
        help="ITM output: log-odds (default; ranks as match_probability, no float saturation) or probability",
    )
    g = p.add_argument_group("recognition and masked image generation")
    g.add_argument(
        "--recognition-items", type=count_arg, default=None, help="items to classify (default all)"
    )
    g.add_argument(
        "--mig-images", type=count_arg, default=64, help="images to mask and reconstruct (default 64)"
    )
    g.add_argument(
        "--strategies", default=",".join(IMAGE_MASK_STRATEGIES), help="comma list of mask strategies"
    )
    g.add_argument("--mask-ratio", type=float, default=0.5, help="masked share of the image (default 0.5)")
    g.add_argument("--mask-unit", type=count_arg, default=16, help="mask unit in pixels (default 16)")
    g.add_argument("--no-mig-text", action="store_true", help="reconstruct without the text")
    x = p.add_argument_group("execution")
    x.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    x.add_argument(
        "--batch-size", type=count_arg, default=None, help="pairs per forward (default 8 CPU, 128 CUDA)"
    )
    x.add_argument("--threads", type=count_arg, default=None, help="torch CPU threads")
    x.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 on CUDA; on CPUs with native bf16 the faster of the two, "
                        "measured once and cached; else fp32")  # fmt: skip
    x.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    x.add_argument("--image-size", type=count_arg, default=None, help="default: the model's image size")
    x.add_argument("--resize", choices=("pad", "crop_stretch"), default="pad", help="how images are squared")
    x.add_argument("--examples", type=int, default=4, help="examples per figure in the report (default 4)")
    x.add_argument(
        "--cache-mb", type=count_arg, default=2048, help="prepared-image cache bound (default 2048)"
    )
    x.add_argument("--image-cache", default="auto", metavar="DIR",
                   help="decoded-image cache: auto (in $MVLT_CACHE_DIR/images or ~/.cache/mvlt/images), "
                        "off, or a folder")  # fmt: skip
    x.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_evaluate)


def open_split(data: str, split: str | None, **options: object):
    """Open the evaluation split; without ``--split`` try ``test`` then ``validation`` (Fashion-Gen)."""
    from ..data.errors import DataError
    from ..data.sources import open_catalogue

    if data.strip().lower() != "synthetic" and not Path(data).exists():
        raise FileNotFoundError(f"--data {data}: no such file or directory")
    if split is not None:
        return open_catalogue(data, split=split, **options)
    errors = []
    for candidate in ("test", "validation"):
        try:
            catalogue = open_catalogue(data, split=candidate, **options)
        except (DataError, FileNotFoundError) as err:
            errors.append(str(err))
            continue
        log.info("--split not given: evaluating split %r", candidate)
        return catalogue
    raise ValueError(
        f"--data {data}: no 'test' or 'validation' split; name one with --split ({'; '.join(errors)})"
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from ..model import MVLT
    from .run import EvalOptions
    from .runner import evaluate, format_table, parse_tasks

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        tasks = parse_tasks(args.task)
        if not args.checkpoint.is_dir():
            raise FileNotFoundError(f"--checkpoint {args.checkpoint}: not a checkpoint directory")
        if args.candidates is not None and not args.candidates.is_file():
            raise FileNotFoundError(f"--candidates {args.candidates}: file not found")
        if args.vocab is not None and not args.vocab.is_file():
            raise FileNotFoundError(f"--vocab {args.vocab}: file not found")
        options = EvalOptions(
            retrieval=RetrievalProtocol(
                args.queries, args.repeats, args.negatives, args.topup, args.ties, args.seed
            ),
            candidates_file=str(args.candidates) if args.candidates else None,
            score=args.score,
            rerank_top=args.rerank_top,
            itm_score=args.itm_score,
            mirror=args.mirror,
            hub_bank=args.hub_bank,
            seed=args.seed,
            batch_size=args.batch_size,
            precision=args.precision,
            device=args.device,
            image_size=args.image_size,
            resize=args.resize,
            recognition_items=args.recognition_items,
            mig_images=args.mig_images,
            mig_strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
            mask_ratio=args.mask_ratio,
            mask_unit=args.mask_unit,
            mig_text=not args.no_mig_text,
            examples=args.examples,
            cache_mb=args.cache_mb,
            image_cache=args.image_cache,
            progress=not args.no_progress and sys.stderr.isatty(),
            checkpoint=str(args.checkpoint),
            training_logs=tuple(str(p) for p in [args.checkpoint / "metrics.jsonl"] if p.is_file()),
        )
        model = MVLT.from_pretrained(args.checkpoint)
        tokenizer = None
        if args.vocab is not None:
            from ..data.tokenizer import Tokenizer

            tokenizer = Tokenizer.from_vocab(args.vocab, max_length=model.config.max_text_len)
        catalogue = open_split(args.data, args.split, skip_bad_rows=args.skip_bad_rows)
        bank = None
        if args.hub_bank:
            if args.hub_split == catalogue.split or args.hub_split == "all":
                raise UsageError(
                    f"--hub-split {args.hub_split}: the bank must not hold the evaluated products "
                    f"(split {catalogue.split!r}); draw it from the training split"
                )
            bank = open_split(args.data, args.hub_split, skip_bad_rows=args.skip_bad_rows)
        explicit = "all" not in [t.strip() for t in args.task.split(",")]
        metrics = evaluate(
            model,
            catalogue,
            tasks,
            options,
            args.out,
            tokenizer=tokenizer,
            explicit_tasks=explicit,
            bank=bank,
        )
    except ERRORS as err:
        return fail("evaluate", err)
    print(format_table(metrics))
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'report.html'}")
    return 0
