"""Lower-cased WordPiece tokenizer (BERT-uncased compatible), built on the ``tokenizers`` package.

Why not ``transformers``: version 5 silently ignores ``BertTokenizer(vocab_file=...)`` and the
released code fetched its tokenizer from the internet at run time. Here a tokenizer is a plain
``vocab.txt`` (one token a line, id = line number) plus ``tokenizer_config.json``; it is saved
into every checkpoint directory, so a checkpoint is self-contained, and nothing is ever fetched.

Texts become ``[CLS] word-pieces [SEP]``, truncated to ``max_length`` tokens (128 by default).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as _Backend
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from ..fileio import atomic_write_text, read_json
from .wordpiece import learn_vocabulary

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
VOCAB_NAME = "vocab.txt"
CONFIG_NAME = "tokenizer_config.json"
FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH = 128


class TokenizerError(ValueError):
    """A vocabulary or tokenizer directory that cannot be used."""


def read_vocab(path: str | Path) -> list[str]:
    """Tokens of a ``vocab.txt`` in id order; refuses files without BERT's special tokens.

    A vocabulary with other special tokens (``<s>``, ``<pad>``, ...) would tokenize without error
    but feed the model wrong [CLS]/[SEP]/[MASK] ids, so it is refused here with the names of the
    missing tokens.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise TokenizerError(f"{path}, line {line}: not UTF-8 text ({err.reason})") from err
    tokens = [line.rstrip("\r") for line in text.split("\n")]
    if tokens and tokens[-1] == "":
        tokens.pop()  # the final newline
    seen: dict[str, int] = {}
    for number, token in enumerate(tokens, start=1):
        if token == "" or token.strip() != token:
            raise TokenizerError(f"{path}, line {number}: empty token or token with surrounding blanks")
        if token in seen:
            raise TokenizerError(
                f"{path}, line {number}: duplicate token {token!r} (first on line {seen[token]})"
            )
        seen[token] = number
    missing = [t for t in SPECIAL_TOKENS if t not in seen]
    if missing:
        raise TokenizerError(
            f"{path} is not a BERT-style WordPiece vocabulary: it lacks the special token(s) "
            f"{', '.join(missing)} (needed: {', '.join(SPECIAL_TOKENS)})"
        )
    return tokens


def _build_backend(vocab: dict[str, int] | None, lowercase: bool, max_length: int) -> _Backend:
    """BERT's pipeline: BertNormalizer (clean, CJK split, lowercase + strip accents), BertPreTokenizer."""
    backend = _Backend(WordPiece(vocab=vocab, unk_token=UNK, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    if vocab is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}", special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])]
        )
        backend.add_special_tokens(list(SPECIAL_TOKENS))  # existing ids; kept whole, skipped by decode
        backend.enable_truncation(max_length)
    return backend


BERT_VOCAB = Path(__file__).with_name("assets") / "bert-base-uncased-vocab.txt"
"""The bundled BERT-base-uncased vocabulary (Apache-2.0), the released code's tokenizer."""


def bert_tokenizer(max_length: int = DEFAULT_MAX_LENGTH) -> Tokenizer:
    """The default tokenizer: bundled BERT-base-uncased WordPiece, lower-cased, works offline."""
    return Tokenizer.from_vocab(BERT_VOCAB, max_length=max_length)


class Tokenizer:
    """WordPiece tokenizer with the interface the model, data and evaluation code use.

    Build one with :meth:`from_vocab` (a BERT ``vocab.txt``), :meth:`load` (a directory written by
    :meth:`save`) or :meth:`train` (a new vocabulary from a catalogue's texts).
    """

    def __init__(
        self, tokens: Sequence[str], *, max_length: int = DEFAULT_MAX_LENGTH, lowercase: bool = True
    ):
        if max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
        self._tokens = list(tokens)
        vocab = {t: i for i, t in enumerate(self._tokens)}
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing or len(vocab) != len(self._tokens):
            raise TokenizerError(f"vocabulary lacks {missing} or has duplicate tokens")
        self._max_length = int(max_length)
        self._lowercase = bool(lowercase)
        self._backend = _build_backend(vocab, self._lowercase, self._max_length)
        self._ids = {t: vocab[t] for t in SPECIAL_TOKENS}

    # ------------------------------------------------------------------ construction / persistence
    @classmethod
    def from_vocab(
        cls, path: str | Path, max_length: int = DEFAULT_MAX_LENGTH, lowercase: bool = True
    ) -> Tokenizer:
        """A tokenizer over a BERT ``vocab.txt`` (e.g. ``bert-base-uncased-vocab.txt``)."""
        return cls(read_vocab(path), max_length=max_length, lowercase=lowercase)

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Reload a tokenizer saved with :meth:`save` (``vocab.txt`` + ``tokenizer_config.json``)."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        missing = f"no tokenizer in {directory}: {CONFIG_NAME} is missing"
        config = read_json(config_path, missing=missing, error=TokenizerError)
        if config.get("type") != "wordpiece":
            raise TokenizerError(f"{config_path}: unsupported tokenizer type {config.get('type')!r}")
        tokenizer = cls.from_vocab(
            directory / config.get("vocab_file", VOCAB_NAME),
            max_length=int(config.get("max_length", DEFAULT_MAX_LENGTH)),
            lowercase=bool(config.get("lowercase", True)),
        )
        expected = config.get("special_tokens", {})
        found = {name: tokenizer._ids[name] for name in expected if name in tokenizer._ids}
        if found != expected:
            raise TokenizerError(
                f"{config_path}: special token ids {expected} do not match the vocabulary {found}"
            )
        return tokenizer

    def save(self, directory: str | Path) -> Path:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` into ``directory`` (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / VOCAB_NAME, "".join(f"{t}\n" for t in self._tokens))
        atomic_write_text(directory / CONFIG_NAME, json.dumps(self.config(), indent=2) + "\n")
        return directory

    def config(self) -> dict[str, Any]:
        return {
            "type": "wordpiece",
            "format_version": FORMAT_VERSION,
            "vocab_file": VOCAB_NAME,
            "vocab_size": self.vocab_size,
            "max_length": self._max_length,
            "lowercase": self._lowercase,
            "special_tokens": dict(self._ids),
        }

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        min_frequency: int = 2,
        max_length: int = DEFAULT_MAX_LENGTH,
        lowercase: bool = True,
        limit_alphabet: int = 1000,
    ) -> Tokenizer:
        """Learn a WordPiece vocabulary of at most ``vocab_size`` tokens from ``texts``.

        For catalogues in another language or domain, where BERT's English vocabulary splits
        words into many pieces. The special tokens take ids 0..4 ([PAD]=0, [UNK]=1, [CLS]=2,
        [SEP]=3, [MASK]=4). A model must be built with ``vocab_size`` equal to the result's. The
        same texts give the same vocabulary in every process (``wordpiece.learn_vocabulary``).
        """
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}"
            )
        backend = _build_backend(None, lowercase, max_length)
        normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
        assert normalizer is not None and pre_tokenizer is not None
        words: Counter[str] = Counter()
        for text in texts:
            if text and text.strip():
                words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
        size = vocab_size - len(SPECIAL_TOKENS)
        learnt = learn_vocabulary(words, size, min_frequency=min_frequency, limit_alphabet=limit_alphabet)
        tokens = [*SPECIAL_TOKENS, *(t for t in learnt if t not in SPECIAL_TOKENS)]
        return cls(tokens, max_length=max_length, lowercase=lowercase)

    # ----------------------------------------------------------------------------- encode / decode
    def encode(self, text: str) -> list[int]:
        """``[CLS] pieces [SEP]`` ids, at most ``max_length`` long."""
        return self._backend.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._backend.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def tokenize(self, text: str) -> list[str]:
        """Word-pieces of ``text`` (with [CLS]/[SEP]); for inspection."""
        return self._backend.encode(text).tokens

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self._tokens[index] if 0 <= index < len(self._tokens) else None

    # ---------------------------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def lowercase(self) -> bool:
        return self._lowercase

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK]

    @property
    def cls_id(self) -> int:
        return self._ids[CLS]

    @property
    def sep_id(self) -> int:
        return self._ids[SEP]

    @property
    def mask_id(self) -> int:
        return self._ids[MASK]

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids MLM never selects: [PAD], [UNK], [CLS], [SEP], [MASK] (sorted)."""
        return tuple(sorted(self._ids.values()))

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tokenizer) and self.config() == other.config() and self._tokens == other._tokens
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        size, length, lower = self.vocab_size, self._max_length, self._lowercase
        return f"Tokenizer(vocab_size={size}, max_length={length}, lowercase={lower})"

    def __getstate__(self) -> dict[str, Any]:
        # The Rust backend pickles fine, but rebuilding from the token list is smaller and version-proof.
        return {"tokens": self._tokens, "max_length": self._max_length, "lowercase": self._lowercase}

    def __setstate__(self, state: dict[str, Any]) -> None:
        tokens, max_length, lowercase = state["tokens"], state["max_length"], state["lowercase"]
        self.__init__(tokens, max_length=max_length, lowercase=lowercase)  # type: ignore[misc]
