"""``mvlt tokenizer``: train a WordPiece vocabulary on a catalogue's texts, or inspect a tokenizer.

For catalogues in another language or domain than BERT's English vocabulary covers.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..exits import ERRORS, fail
from .sources import open_catalogue
from .tokenizer import DEFAULT_MAX_LENGTH, Tokenizer


def register(subparsers: Any) -> None:
    """Add ``tokenizer train`` and ``tokenizer encode`` to the ``mvlt`` command line."""
    parser = subparsers.add_parser("tokenizer", help="train or inspect a WordPiece tokenizer")
    sub = parser.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")

    train = sub.add_parser("train", help="learn a vocabulary from a catalogue's texts")
    train.add_argument("--data", required=True, help="manifest (CSV/JSONL), Fashion-Gen .h5, or 'synthetic'")
    train.add_argument(
        "--vocab-size", type=int, required=True, help="largest vocabulary size (incl. specials)"
    )
    train.add_argument(
        "--out", required=True, help="directory to write vocab.txt + tokenizer_config.json into"
    )
    train.add_argument(
        "--split", default=None, help="only texts of this split (e.g. train; 'all': every row, the default)"
    )
    train.add_argument(
        "--min-frequency", type=int, default=2, help="ignore pieces seen fewer times (default 2)"
    )
    train.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="truncation length L")
    train.add_argument("--cased", action="store_true", help="keep case and accents (default: lower-case)")
    train.add_argument(
        "--skip-bad-rows", action="store_true", help="skip (and count) bad rows instead of failing"
    )
    train.set_defaults(run=run_train)

    encode = sub.add_parser("encode", help="show the ids and word-pieces of a text")
    encode.add_argument("text", help="the text to tokenize")
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokenizer", help="a directory written by 'tokenizer train' or a checkpoint")
    source.add_argument("--vocab", help="a BERT vocab.txt")
    encode.set_defaults(run=run_encode)


def run_train(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"skip_bad_rows": args.skip_bad_rows}
    if args.data.strip().lower() != "synthetic" and not args.data.endswith((".h5", ".hdf5")):
        options.update(check_files=False, verify_images=False)  # only the texts are needed
    try:
        catalogue = open_catalogue(args.data, split=args.split, **options)
        tokenizer = Tokenizer.train(
            catalogue.texts,
            args.vocab_size,
            min_frequency=args.min_frequency,
            max_length=args.max_length,
            lowercase=not args.cased,
        )
    except ERRORS as err:
        return fail("tokenizer train", err)
    tokenizer.save(args.out)
    print(
        f"trained a {tokenizer.vocab_size}-token vocabulary on {len(catalogue)} texts of {catalogue.source}"
    )
    print(f"wrote {args.out}/vocab.txt and {args.out}/tokenizer_config.json")
    report = catalogue.skip_report()
    if report:
        print(report)
    return 0


def run_encode(args: argparse.Namespace) -> int:
    try:
        tokenizer = Tokenizer.load(args.tokenizer) if args.tokenizer else Tokenizer.from_vocab(args.vocab)
    except ERRORS as err:
        return fail("tokenizer encode", err)
    print(tokenizer.encode(args.text))
    print(" ".join(tokenizer.tokenize(args.text)))
    return 0
