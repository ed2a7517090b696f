from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mvlt.data import Tokenizer, TokenizerError

SPEC_TEXT = "a red t-shirt with short sleeves and a crew neck"
SPEC_IDS = [101, 1037, 2417, 1056, 1011, 3797, 2007, 2460, 15114, 1998, 1037, 3626, 3300, 102]


@pytest.fixture(scope="module")
def bert(bert_vocab: Path) -> Tokenizer:
    return Tokenizer.from_vocab(bert_vocab)


def test_spec_example_ids(bert: Tokenizer) -> None:
    assert bert.encode(SPEC_TEXT) == SPEC_IDS
    assert bert.encode(SPEC_TEXT.upper()) == SPEC_IDS  # lower-cased
    assert bert.encode_batch([SPEC_TEXT, "hello"])[0] == SPEC_IDS


def test_special_ids(bert: Tokenizer) -> None:
    assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (0, 100, 101, 102, 103)
    assert set(bert.special_ids) >= {0, 100, 101, 102, 103}
    assert bert.vocab_size == 30522
    assert bert.max_length == 128


def test_truncation_and_decode(bert: Tokenizer) -> None:
    ids = bert.encode("word " * 500)
    assert len(ids) == 128 and ids[0] == 101 and ids[-1] == 102
    assert Tokenizer.from_vocab.__defaults__ is not None
    short = Tokenizer(list(_tokens(bert)), max_length=8)
    assert len(short.encode(SPEC_TEXT)) == 8
    assert bert.decode(bert.encode("Hello World")) == "hello world"
    assert bert.encode("") == [101, 102]


def _tokens(tok: Tokenizer) -> list[str]:
    return [tok.id_to_token(i) or "" for i in range(tok.vocab_size)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<s>\n</s>\n<pad>\n<unk>\n<mask>\nhello\n", "lacks the special token"),
        ("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", r"\[MASK\]"),
        ("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n", "duplicate token"),
        ("", "lacks the special token"),
    ],
)
def test_bad_vocab_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match=message) as err:
        Tokenizer.from_vocab(path)
    assert str(path) in str(err.value)


def test_missing_and_undecodable_vocab(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        Tokenizer.from_vocab(tmp_path / "nope.txt")
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n")
    with pytest.raises(TokenizerError, match="line 3"):
        Tokenizer.from_vocab(path)


def test_save_load_round_trip(bert: Tokenizer, tmp_path: Path) -> None:
    bert.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "vocab.txt").is_file()
    assert (tmp_path / "ckpt" / "tokenizer_config.json").is_file()
    again = Tokenizer.load(tmp_path / "ckpt")
    assert again == bert
    assert again.encode(SPEC_TEXT) == SPEC_IDS
    assert pickle.loads(pickle.dumps(bert)).encode(SPEC_TEXT) == SPEC_IDS


def test_load_without_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer_config\.json"):
        Tokenizer.load(tmp_path)


def test_train_save_load(tmp_path: Path) -> None:
    texts = ["a red striped t-shirt with short sleeves", "une robe bleue à pois", "a blue dress"] * 20
    tok = Tokenizer.train(texts, vocab_size=80, min_frequency=1, max_length=32)
    assert tok.vocab_size <= 80
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    ids = tok.encode("a red dress")
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id and tok.unk_id not in ids
    assert tok.tokenize("a red dress")[1:-1] == ["a", "red", "dress"]
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again == tok and again.max_length == 32
    assert again.encode("une robe bleue") == tok.encode("une robe bleue")


def test_train_rejects_tiny_vocab() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(["a b c"], vocab_size=5)


def test_bundled_bert_vocab_is_the_shared_one(bert_vocab) -> None:
    from mvlt.data import BERT_VOCAB, bert_tokenizer

    assert BERT_VOCAB.read_bytes() == bert_vocab.read_bytes()
    ids = bert_tokenizer().encode("a red t-shirt with short sleeves and a crew neck")
    assert ids == [101, 1037, 2417, 1056, 1011, 3797, 2007, 2460, 15114, 1998, 1037, 3626, 3300, 102]
