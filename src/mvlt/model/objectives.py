"""The pieces of the ITC objective and of ITM on ITC-mined negatives (ALBEF, Li et al. 2021).

Everything here works on the *global* batch: under DDP the features of every process are gathered
(with their gradients) through a :class:`Gather`, so one process and N processes compute the same
loss. The model never imports the training package: the engine hands a ``Gather`` in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
import torch.nn.functional as F

_HASH_MASK = (1 << 31) - 1


class Gather(Protocol):
    """Concatenate a tensor over every process along dim 0 (rank order), keeping its gradient."""

    rank: int
    world_size: int

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor: ...


class LocalGather:
    """One process: the global batch is the local batch."""

    rank = 0
    world_size = 1

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor


def pad_columns(tensor: torch.Tensor, length: int, value: int) -> torch.Tensor:
    """Right-pad ``B x L`` to ``B x length`` so rows of different processes can be gathered."""
    return F.pad(tensor, (0, length - tensor.shape[1]), value=value) if tensor.shape[1] < length else tensor


def same_text(ids: torch.Tensor, all_ids: torch.Tensor) -> torch.Tensor:
    """``B x G`` bool: row ``i`` of ``ids`` and row ``j`` of ``all_ids`` are the same token sequence
    (a colour variant that shares its description, or the item itself). Both are padded alike."""
    return (ids[:, None, :] == all_ids[None, :, :]).all(-1)


class EmbeddingMemory:
    """The ITC embeddings of the last ``size`` global rows, as extra ITC negatives (cross-batch
    memory, XBM, Wang et al. 2020; MoCo's and ALBEF's queues without the momentum encoder).

    A batch of 64 offers each row 63 negatives; the memory adds the last ``size`` rows' embeddings,
    detached and a few steps stale, which stay close to the current model's once training is past
    its first steps. Rows whose text is the query's (the item seen again, or a colour variant)
    count as positives, as in the batch. The engine owns it (the model never holds training state)
    and saves it with the checkpoint, so a resumed run continues exactly.
    """

    def __init__(self, size: int, dim: int, text_length: int) -> None:
        if size <= 0:
            raise ValueError(f"EmbeddingMemory: size must be positive, got {size}")
        self.size = size
        self.image = torch.zeros(0, dim)
        self.text = torch.zeros(0, dim)
        self.ids = torch.zeros(0, text_length, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.image)

    def negatives(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stored image and text embeddings and token ids, oldest first, on ``device``."""
        return self.image.to(device), self.text.to(device), self.ids.to(device)

    @torch.no_grad()
    def push(self, image: torch.Tensor, text: torch.Tensor, ids: torch.Tensor) -> None:
        """Append a global batch (``G x dim`` embeddings, ``G x text_length`` ids); keep the newest
        ``size`` rows."""
        self.image = torch.cat((self.image.to(image.device), image.detach().float()))[-self.size :]
        self.text = torch.cat((self.text.to(text.device), text.detach().float()))[-self.size :]
        self.ids = torch.cat((self.ids.to(ids.device), ids))[-self.size :]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"image": self.image.cpu(), "text": self.text.cpu(), "ids": self.ids.cpu()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if state["image"].shape[1:] != self.image.shape[1:] or state["ids"].shape[1:] != self.ids.shape[1:]:
            raise ValueError(
                f"EmbeddingMemory: saved rows {tuple(state['image'].shape)}, ids {tuple(state['ids'].shape)} "
                f"do not fit ({self.image.shape[1]}-d, {self.ids.shape[1]} tokens)"
            )
        self.image, self.text, self.ids = (state[k][-self.size :] for k in ("image", "text", "ids"))


def contrastive_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    all_image: torch.Tensor,
    all_text: torch.Tensor,
    same: torch.Tensor,
    temperature: torch.Tensor,
) -> torch.Tensor:
    """Symmetric InfoNCE of the local rows against the global batch.

    ``image`` / ``text``: ``B x d`` local unit embeddings; ``all_*``: ``G x d`` global ones;
    ``same``: ``B x G``, the targets (every global item with the row's text counts as a positive,
    with equal weight, so colour variants are not pushed apart). Mean over local rows.
    """
    targets = same.float() / same.float().sum(1, keepdim=True)
    i2t = image.float() @ all_text.float().t() / temperature
    t2i = text.float() @ all_image.float().t() / temperature
    loss_i2t = -(targets * F.log_softmax(i2t, dim=1)).sum(1).mean()
    loss_t2i = -(targets * F.log_softmax(t2i, dim=1)).sum(1).mean()
    return (loss_i2t + loss_t2i) / 2


def embedding_distillation(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Feature mimicry of unit embeddings (CLIP-KD's strongest single term): mean ``1 - cos``,
    half the squared distance between the unit vectors."""
    return (1 - (student.float() * target.float()).sum(-1)).mean()


def tag_distillation(logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The sum over tag columns of ``KL(target || softmax(logits))``, averaged over rows: the tag
    heads learn a teacher's class probabilities (``targets``, per column ``B x classes``)."""
    missing = [c for c in logits if c not in targets]
    if missing:
        raise ValueError(f"kd_tags: no teacher probabilities for tag column(s) {missing}")
    total = next(iter(logits.values())).new_zeros((), dtype=torch.float32)
    for column, student in logits.items():
        target = targets[column].float()
        if target.shape != student.shape:
            raise ValueError(
                f"kd_tags: teacher probabilities {tuple(target.shape)} for {column!r} do not match the "
                f"head's logits {tuple(student.shape)}"
            )
        total = total + F.kl_div(student.float().log_softmax(-1), target, reduction="batchmean")
    return total


def soft_contrastive_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    all_image: torch.Tensor,
    all_text: torch.Tensor,
    temperature: torch.Tensor,
    target_image: torch.Tensor,
    target_text: torch.Tensor,
    all_target_image: torch.Tensor,
    all_target_text: torch.Tensor,
    target_temperature: float,
) -> torch.Tensor:
    """ITC against soft targets: the teacher pair's similarity of each local row to every global
    row, softmaxed at its own temperature, as the target distribution of the student's (ALBEF's
    momentum distillation, with a frozen teacher pair in place of the momentum model)."""
    losses = []
    for query, keys, t_query, t_keys in (
        (image, all_text, target_image, all_target_text),
        (text, all_image, target_text, all_target_image),
    ):
        targets = F.softmax(t_query.float() @ t_keys.float().t() / target_temperature, dim=1)
        logits = query.float() @ keys.float().t() / temperature
        losses.append(-(targets * F.log_softmax(logits, dim=1)).sum(1).mean())
    return (losses[0] + losses[1]) / 2


def _mix(h: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer mixing round (products stay below 2**62, so int64 never overflows)."""
    h = ((h >> 15) ^ h) * 0x2C1B3C6D & _HASH_MASK
    h = ((h >> 12) ^ h) * 0x297A2D39 & _HASH_MASK
    return (h >> 15) ^ h


def pair_uniform(seed: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``len(rows) x len(cols)`` uniforms in (0, 1), a pure function of ``(seed, row key, col key)``.

    Keyed by item identity (catalogue index), not by position, so the draws do not depend on how
    the global batch is split over processes or ordered.
    """
    h = _mix(torch.full_like(rows, seed & _HASH_MASK))
    h = _mix(h ^ (rows & _HASH_MASK))[:, None]
    h = _mix(h ^ (cols & _HASH_MASK)[None, :])
    return (h.double() + 0.5) / float(1 << 31)


def sample_negatives(
    logits: torch.Tensor, valid: torch.Tensor, row_keys: torch.Tensor, col_keys: torch.Tensor, seed: int
) -> torch.Tensor:
    """For each row, one column drawn with probability ``softmax(logits)`` over the ``valid`` columns.

    Gumbel-max sampling with noise from :func:`pair_uniform`. A row with no valid column falls back
    to any other column (it happens only when every item of the batch shares one text).
    """
    u = pair_uniform(seed, row_keys, col_keys).to(logits.device)
    gumbel = -torch.log(-torch.log(u))
    if not bool(valid.any(1).all()):
        fallback = row_keys[:, None] != col_keys[None, :]
        valid = torch.where(valid.any(1, keepdim=True), valid, fallback)
    scores = logits.detach().double() + gumbel
    return scores.masked_fill(~valid, float("-inf")).argmax(1)
