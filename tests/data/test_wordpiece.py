"""The WordPiece vocabulary learner: BPE merges, deterministic ties, the same result in every process."""

from __future__ import annotations

import os
import subprocess
import sys

from mvlt.data.wordpiece import learn_vocabulary


def test_merges_most_frequent_pair_first_and_stops_at_min_frequency() -> None:
    vocab = learn_vocabulary({"ab": 10, "abc": 2, "cd": 1}, size=100, min_frequency=2)
    alphabet = ["a", "b", "c", "d", "##b", "##c", "##d"]
    assert vocab[: len(alphabet)] == alphabet
    # ("a", "##b") occurs 12 times, then ("ab", "##c") twice; ("c", "##d") only once.
    assert vocab[len(alphabet) :] == ["ab", "abc"]


def test_ties_go_to_the_smallest_pair_whatever_the_input_order() -> None:
    forward = learn_vocabulary({"xy": 3, "pq": 3}, size=100, min_frequency=1)
    backward = learn_vocabulary({"pq": 3, "xy": 3}, size=100, min_frequency=1)
    assert forward == backward
    assert forward[-2:] == ["pq", "xy"]


def test_size_and_alphabet_limits() -> None:
    assert len(learn_vocabulary({"banana": 9, "bandana": 4}, size=6)) == 6
    vocab = learn_vocabulary({"aab": 3, "c": 1}, size=100, limit_alphabet=2)
    assert "c" not in vocab and "a" in vocab and "##b" in vocab


SCRIPT = """
from mvlt.data.synthetic import describe, generate_products
from mvlt.data.tokenizer import Tokenizer
texts = [describe(p) for p in generate_products(400, 0, 0.2)[0]]
tokenizer = Tokenizer.train(texts, 1000)
print(" ".join(tokenizer.id_to_token(i) for i in range(len(tokenizer))))
"""


def test_same_vocabulary_in_every_process() -> None:
    """``tokenizers``' own trainer gave a different vocabulary per process (hash-map order)."""
    outputs = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs.add(run.stdout)
    assert len(outputs) == 1
