"""The ``mvlt`` command line: one entry point, one sub-command per job.

Each sub-command is registered by the package that implements it (``register(subparsers)``), so
this file only lists them; the work lives next to the code it drives.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .runtime import malloc_tuning

# (module, what it adds); each module exposes ``register(subparsers)``.
COMMAND_MODULES = (
    "mvlt.train.cli",  # pretrain, finetune
    "mvlt.eval.cli",  # evaluate
    "mvlt.data.cli",  # tokenizer
    "mvlt.search.cli",  # index, search, serve, export
    "mvlt.tagging.cli",  # tag
    "mvlt.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvlt", description="Masked Vision-Language Transformer for fashion e-commerce."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    # `mvlt evaluate --task tagging` is the tagging package's evaluation: evaluation sits below
    # tagging and cannot import it, so tagging extends the evaluate command here.
    importlib.import_module("mvlt.tagging.cli").extend_evaluate(sub.choices["evaluate"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``mvlt`` program: tune glibc's allocator for large tensors (by restarting this process
    once with ``MALLOC_*`` set; ``MVLT_MALLOC_TUNING=0`` opts out), then run :func:`main`."""
    tuning = malloc_tuning()
    if tuning:
        os.environ.update(tuning)
        os.execv(sys.executable, [sys.executable, "-m", "mvlt.cli", *sys.argv[1:]])
    sys.exit(main())


if __name__ == "__main__":
    entry()
