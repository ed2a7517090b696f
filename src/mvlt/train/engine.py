"""The training engine behind ``mvlt pretrain`` and ``mvlt finetune``.

The model owns its losses (``MVLT.forward_loss``); the engine owns everything else: devices and
processes (one process, or DDP under ``torchrun``), precision, the optimizer and schedule,
gradient accumulation and clipping, the input schedule, checkpoints and exact resume, the
non-finite-loss guard, graceful SIGTERM/SIGINT, the progress bar and the metric logs.

Exactness. A run is a pure function of its config: the data order of an epoch comes from
``(seed, epoch)``, every sample's random draws from ``(seed, epoch, index)``, and dropout from the
torch RNG, which checkpoints save and restore. The global batch (``batch_size``) is fixed, and
losses that average over a variable number of labelled positions (MLM tokens, known recognition
labels) are normalised by the count over the *whole* global batch, so 1 process, N processes and
any accumulation give the same gradient up to float rounding.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..data.audit import audit_lines
from ..data.augment import augment_images
from ..data.errors import DataError
from ..exits import RunFailed
from ..masking import IGNORE_INDEX
from ..model.config import OBJECTIVES, LossWeights
from ..model.objectives import EmbeddingMemory
from ..runtime import Precision, resolve_precision
from . import checkpoint as ckpt
from .average import WeightAverage
from .budget import CHECK_EVERY_STEPS, BudgetFit
from .calibrate import training_workload
from .config import TrainConfig
from .data import ResumableSampler, build_dataset, epoch_loader, tag_lines
from .distributed import (
    FeatureGather,
    Runtime,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    gather_objects,
    init_runtime,
)
from .head_fit import fit_recognition_heads
from .model_setup import build_model_and_data, freeze_unused
from .optim import build_optimizer
from .resume import RunExistsError, bad_row_message, prepare_out, restore
from .runlog import RunLog, Window, progress_bar
from .schedule import WarmupCosine, annealed, warmup_steps
from .stop import TIME_BUDGET, StopFlag
from .teachers.distill import recognition_targets, setup_teachers
from .teachers.models import require_teachers

COUNTED_LOSSES = {"mlm": "mlm_labels", "category": "category_labels", "subcategory": "subcategory_labels"}
"""Losses that average over labelled positions only; normalised by the global-batch count."""
__all__ = ["TIME_BUDGET", "NonFiniteLossError", "RunExistsError", "TrainResult", "train"]


class NonFiniteLossError(RunFailed):
    """The loss became NaN or infinite; the run stopped before applying that update."""


@dataclass
class TrainResult:
    """What a finished (or interrupted) run produced."""

    out: Path
    steps: int
    total_steps: int
    seconds: float
    losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    interrupted: str | None = None
    """The signal that stopped the run early (``SIGTERM`` / ``SIGINT``), else None."""


# ------------------------------------------------------------------------------- public API
def train(config: TrainConfig, *, resume: bool | str = False, overwrite: bool = False) -> TrainResult:
    """Run (or with ``resume``, continue) the training described by ``config``.

    Works alone or under ``torchrun``. ``resume``: True for the newest checkpoint that loads, or a
    step directory's name or step number (:mod:`.resume`). ``overwrite`` deletes an earlier run's
    checkpoints and logs in ``config.out`` instead of refusing to start.
    """
    config = config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    runtime = init_runtime(config.device)
    try:
        result = Trainer(config, runtime, resume=resume, overwrite=overwrite).run()
        barrier(runtime)  # no rank tears the process group down while another still writes or talks
        return result
    finally:
        cleanup(runtime)


def pretrain(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Pre-train (MIR + ITM + MLM by default); returns the output directory (a loadable model)."""
    return train(config.replace(task="pretrain"), resume=resume, overwrite=overwrite).out


def finetune(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Fine-tune the recognition heads (and by default the encoder) from ``config.init``."""
    return train(config.replace(task="finetune"), resume=resume, overwrite=overwrite).out


# ---------------------------------------------------------------------------------- engine
class Trainer:
    """One run: built by ``__init__`` (data, model, optimizer, resume state), driven by ``run``."""

    def __init__(
        self, config: TrainConfig, runtime: Runtime, *, resume: bool | str = False, overwrite: bool = False
    ):
        self.config, self.runtime = config, runtime
        self.out = Path(config.out)
        self.log = RunLog(self.out, runtime.is_main)
        self.resumed = prepare_out(config, runtime, resume, overwrite)
        self.resume_from = self.resumed.state.path if self.resumed is not None else None
        self.weights = config.resolved_loss_weights()
        self.loss_weights = LossWeights(**self.weights)
        self.input_schedule = config.resolved_input_schedule()
        self.itm_negatives = config.resolved_itm_negatives()
        self.gather = FeatureGather(runtime)
        _seed_everything(config.seed)

        resumed_model = self.resumed.model if self.resumed is not None else None
        self.model, self.catalogue, self.image_size = build_model_and_data(
            config, runtime, self.weights, self.itm_negatives, resumed_model
        )
        self.dataset = build_dataset(
            config, self.catalogue, self.model.tokenizer, self.model.label_maps, self.image_size,
            self.weights, self.input_schedule, progress=runtime.is_main,
        )  # fmt: skip
        freeze_unused(self.model, self.weights, config.freeze_encoder)
        self.teachers, self.teacher_lines = setup_teachers(
            config, self.model, self.catalogue, runtime, self.weights, fresh=self.resumed is None
        )
        self.model.to(runtime.device)
        self.average = WeightAverage(self.model, config.ema_decay) if config.ema_decay else None
        self.net: torch.nn.Module = self.model
        if runtime.distributed:
            device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            self.net = DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=config.find_unused_parameters
            )
        self._torch_seed_per_rank()

        # Sizes: the global batch is split over ranks and accumulation steps.
        world, accumulation = runtime.world_size, config.accumulation
        if config.batch_size % (world * accumulation):
            raise ValueError(
                f"--batch-size {config.batch_size} is not divisible by world size {world} × "
                f"accumulation {accumulation}"
            )
        self.micro_batch = config.batch_size // (world * accumulation)
        self.steps_per_epoch = len(self.dataset) // config.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"--data {config.data} (split {config.split}) has {len(self.dataset)} items, fewer than "
                f"one global batch (--batch-size {config.batch_size})"
            )
        self.total_steps = config.steps or max(1, round((config.epochs or 1.0) * self.steps_per_epoch))
        peak = config.peak_lr()
        self.schedule = WarmupCosine(
            peak=peak,
            total=self.total_steps,
            warmup=warmup_steps(self.total_steps, config.warmup_steps, config.warmup_ratio),
            floor=min(config.min_lr, peak),
        )
        self.optimizer = build_optimizer(self.model, peak, config.weight_decay, config.betas, config.eps)
        self.step = 0
        self.precision = self._choose_precision()
        self.scaler = torch.amp.GradScaler(runtime.device.type, enabled=self.precision.needs_scaler)
        self.sampler = ResumableSampler(
            self.dataset, world, runtime.rank, seed=config.seed,
            groups=self.catalogue.subcategories if config.batch_groups else None, block=config.batch_groups,
        )  # fmt: skip
        dims = (self.model.config.contrastive_dim, self.model.config.max_text_len)
        self.memory = EmbeddingMemory(config.itc_memory, *dims) if config.itc_memory else None
        self.last_checkpoint: Path | None = None
        self.budget = BudgetFit(60 * config.fit_minutes) if config.fit_minutes else None
        if self.resumed is not None:
            self._restore()

    # -------------------------------------------------------------------------- set-up parts
    def _choose_precision(self) -> Precision:
        """``--precision``; ``auto`` on a CPU with native bf16 times one micro-batch in fp32 and
        bf16 (rank 0, or the cache) and every rank takes the faster."""
        choice = None
        if self.runtime.is_main:
            # Timed without the kd_* terms: a few products of embeddings, and the batch has no targets.
            weights = {n: 0.0 if n.startswith("kd_") else w for n, w in self.weights.items()}
            forward = {
                "weights": LossWeights(**weights), "use_masked_images": self._uses_masked_images(),
                "itm_negatives": "itc" if self.itm_negatives == "itc" else "data",
            }  # fmt: skip
            workload = training_workload(
                self.model, self.dataset, self.micro_batch, self.runtime.device, weights, forward
            )
            choice = resolve_precision(self.config.precision, self.runtime.device, workload=workload)
        return broadcast_object(choice, self.runtime)

    def _torch_seed_per_rank(self) -> None:
        """Same initial weights everywhere (seeded above); then distinct dropout streams per rank."""
        if self.runtime.distributed:
            torch.manual_seed(self.config.seed + self.runtime.rank)

    def _restore(self) -> None:
        """Optimizer, scaler and RNG states of the checkpoint resumed from (its weights are loaded)."""
        assert self.resumed is not None
        state = self.resumed.state
        expected = {"global_batch": self.config.batch_size, "steps_per_epoch": self.steps_per_epoch}
        restore(state, self.optimizer, self.scaler, self.runtime, self.config.seed, expected, self.memory,
                self.average)  # fmt: skip
        self.step, self.last_checkpoint = state.step, state.path
        if self.budget is not None and "trained_s" in state.state:  # the length the run was fitted to
            self.budget.trained_before_s = float(state.state["trained_s"])
            self.total_steps = int(state.state["total_steps"])
            self.schedule = WarmupCosine(**state.state["schedule"])
        state.optimizer, state.rng = {}, []  # free them: they now live in the optimizer and the RNGs

    # ------------------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        cfg = self.config
        start_step, started = self.step, time.perf_counter()
        self._open_logs()
        self.log.info(self._banner())
        for line in self.resumed.notes if self.resumed is not None else ():  # checkpoints passed over
            self.log.info(line)
        for line in audit_lines(self.catalogue):  # already on stderr, logged when the catalogue opened
            self.log.info(line, echo=False)
        window, losses, interrupted = Window(), {}, None
        show_progress = self.runtime.is_main and cfg.progress
        progress = progress_bar(self.total_steps, start_step, cfg.task) if show_progress else None
        try:
            with StopFlag() as stop:
                for micro in self._remaining_steps():
                    t0 = time.perf_counter()
                    if cfg.max_minutes is not None and t0 - started >= 60 * cfg.max_minutes:
                        stop.signal = stop.signal or TIME_BUDGET
                    metrics, stop_now = self._train_step(micro, stop)
                    self.step += 1
                    window.add(metrics, cfg.batch_size, time.perf_counter() - t0)
                    if self.budget is not None:
                        self._fit_to_budget(started, progress)
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix_str(window.postfix(metrics["lr"]), refresh=False)
                    last = self.step == self.total_steps
                    if self.step % cfg.log_every == 0 or last or stop_now:
                        losses = {k: v for k, v in window.means().items() if k != "lr"}
                        self._log_metrics(window)
                        window = Window()
                    if self.step % cfg.checkpoint_every == 0 or last or stop_now:
                        self._save(losses, time.perf_counter() - started)
                    if stop_now:
                        interrupted = stop.signal or "signal"
                        break
            if self.last_checkpoint != ckpt.step_dir(self.out, self.step):  # e.g. resumed when done
                self._save(losses, time.perf_counter() - started)
            if progress is not None:
                progress.close()
            if self.average is not None:  # what the output folder holds, and what the heads' fit reads
                self.average.copy_to(self.model)
            if cfg.fit_heads and interrupted is None:
                self._fit_heads()
            return self._finish(start_step, started, losses, interrupted)
        except DataError as err:  # an image that cannot be read: keep what the finished steps trained
            raise self._stop_at_bad_row(err, window, losses, started) from None
        except Exception as err:
            self.log.info(f"mvlt {cfg.task}: error: {err}", echo=False)
            raise
        finally:
            if progress is not None:
                progress.close()
            self.log.close()

    def _stop_at_bad_row(
        self, err: DataError, window: Window, losses: dict[str, float], started: float
    ) -> DataError:
        """Log and save the finished steps, as on SIGTERM (one process only: under DDP the other
        ranks are not at a point where they could join the save), and name the row and the way on."""
        saved = self.last_checkpoint == ckpt.step_dir(self.out, self.step)
        if self.step and not saved and not self.runtime.distributed:
            if window.steps:
                losses = {k: v for k, v in window.means().items() if k != "lr"}
                self._log_metrics(window)
            self._save(losses, time.perf_counter() - started)
        stopped = DataError(bad_row_message(err, self.config.task, self.out, self.last_checkpoint))
        self.log.info(f"mvlt {self.config.task}: error: {stopped}", echo=False)
        return stopped

    def _remaining_steps(self) -> Iterator[list[dict[str, Any]]]:
        """This rank's micro-batches for each remaining optimizer step, epoch after epoch, starting
        at the data position of ``self.step`` (which the caller advances after each step)."""
        while self.step < self.total_steps:
            epoch, done = divmod(self.step, self.steps_per_epoch)
            batches = self._epoch_batches(epoch, done)
            for _ in range(self.steps_per_epoch - done):
                if self.step >= self.total_steps:  # re-read each step: a budget re-fit moves it
                    return
                yield [next(batches) for _ in range(self.config.accumulation)]

    def _epoch_batches(self, epoch: int, done_steps: int) -> Iterator[dict[str, Any]]:
        """This rank's micro-batches of ``epoch`` after the first ``done_steps`` optimizer steps
        (skipped by index, so their images are never loaded)."""
        per_step = self.config.accumulation * self.micro_batch
        self.sampler.set_epoch(epoch)
        self.sampler.window(done_steps * per_step, self.steps_per_epoch * per_step)
        loader = epoch_loader(
            self.dataset,
            self.sampler,
            self.micro_batch,
            epoch,
            self.config.seed,
            self.config.workers,
            pin_memory=self.runtime.device.type == "cuda",
        )
        return iter(loader)

    def _fit_to_budget(self, started: float, progress: Any) -> None:
        """``fit_minutes``: every rank takes rank 0's re-fit of the run's length, if any."""
        assert self.budget is not None
        now = time.perf_counter()
        self.budget.step_done(self.step, now)
        if self.step % CHECK_EVERY_STEPS or self.step >= self.total_steps:
            return
        proposal = None
        if self.runtime.is_main:
            proposal = self.budget.proposal(self.step, self.total_steps, now, started)
        proposal = broadcast_object(proposal, self.runtime)
        if proposal is None or proposal == self.total_steps:
            return
        spent = self.budget.trained_before_s + now - started
        rate = self.budget.rate(self.step, now)
        line = BudgetFit.describe(self.step, self.total_steps, proposal, rate, spent, self.budget.budget_s)
        self.log.info(f"mvlt {self.config.task}: {line}")
        self.total_steps = proposal
        self.schedule = dataclasses.replace(
            self.schedule, total=proposal, warmup=min(self.schedule.warmup, proposal)
        )
        if progress is not None:
            progress.total = proposal
            progress.refresh()

    def _uses_masked_images(self) -> bool:
        """Released schedule: even steps (0, 2, ...) clean images, odd steps masked ones."""
        if self.input_schedule == "masked":
            return True
        return self.input_schedule == "alternate" and self.step % 2 == 1

    def _train_step(self, micro: list[dict[str, Any]], stop: StopFlag) -> tuple[dict[str, float], bool]:
        """One optimizer step over ``micro`` (this rank's micro-batches). Returns the global-batch
        losses and whether every rank should stop after this step."""
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        names = [n for n in OBJECTIVES if self.weights[n]]
        scales, counts, denominators = self._normalisers(micro, names)
        sums = self._forward_backward(micro, names, scales, counts)
        # Global means, the non-finite check and agreement on stopping: one all-reduce.
        flags = torch.stack(
            [(~torch.isfinite(sums)).any().double(), sums.new_tensor(float(bool(stop.signal)))]
        )
        packed = all_reduce_sum(torch.cat([sums, flags]), self.runtime).cpu()
        metrics = {n: float(packed[j]) / d if d else 0.0 for j, (n, d) in enumerate(zip(names, denominators))}
        metrics["total"] = sum(self._weight(n) * metrics[n] for n in names)
        if packed[len(names)] > 0 or not math.isfinite(metrics["total"]):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(self._non_finite_message(metrics))
        self._optimizer_step(metrics)
        if self.average is not None:
            self.average.update(self.model, self.step)
        metrics["lr"] = lr
        return metrics, bool(packed[len(names) + 1] > 0)

    def _normalisers(
        self, micro: list[dict[str, Any]], names: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """How each micro-batch's loss enters the global-batch objective.

        A mean over the micro-batch (MIR, ITM) has the same weight in every micro-batch: the
        global mean is the mean of the ``A × W`` micro-batch means. A mean over *labelled
        positions* (MLM tokens, known recognition labels) must be weighted by its share ``n / N``
        of the global count ``N`` (all-reduced). Returns per micro-batch and objective the factor
        on the loss (so that DDP's and accumulation's averaging gives the global mean), the weight
        of its value in the logged sum, and each objective's global denominator.
        """
        shares = len(micro) * self.runtime.world_size  # micro-batches in the global batch
        counts = torch.ones(len(micro), len(names), dtype=torch.float64)
        counted = [j for j, n in enumerate(names) if COUNTED_LOSSES.get(n) in micro[0]]
        for j in counted:
            key = COUNTED_LOSSES[names[j]]
            counts[:, j] = torch.tensor([float((b[key] != IGNORE_INDEX).sum()) for b in micro])
        totals = counts.sum(0)
        if counted and self.runtime.distributed:
            totals = all_reduce_sum(totals.to(self.runtime.device), self.runtime).cpu()
        scales = torch.ones_like(counts)
        denominators = [float(shares)] * len(names)
        for j in counted:
            total = float(totals[j])
            scales[:, j] = counts[:, j] * shares / total if total else 0.0
            denominators[j] = total
        return scales, counts, denominators

    def _forward_backward(
        self, micro: list[dict[str, Any]], names: list[str], scales: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """Accumulate the gradients of every micro-batch; return this rank's weighted loss sums."""
        rt, masked = self.runtime, self._uses_masked_images()
        sums = torch.zeros(len(names), dtype=torch.float64, device=rt.device)
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = nullcontext() if last or not rt.distributed else self.net.no_sync()  # type: ignore[operator]
            batch = _to_device(batch, rt.device)
            if self.config.augment:
                batch["images"] = augment_images(batch["images"], self.config.augment, self._draw_seed(i))
            if self.teachers is not None:
                batch = self.teachers.attach(batch)
            with sync:
                with self.precision.autocast():
                    parts = self.net(
                        batch, weights=self.loss_weights, use_masked_images=masked,
                        itm_negatives="itc" if self.itm_negatives == "itc" else "data", gather=self.gather,
                        seed=self._draw_seed(i), memory=self._memory(),
                    )  # fmt: skip
                missing = [n for n in names if n not in parts]
                if missing:
                    raise ValueError(f"the batch produced no {missing} loss (labels or heads missing)")
                objective = sum(self._weight(n) * float(scales[i, j]) * parts[n] for j, n in enumerate(names))
                sums += torch.stack([parts[n].detach().double() for n in names]) * counts[i].to(rt.device)
                loss = objective / len(micro)
                (self.scaler.scale(loss) if self.scaler.is_enabled() else loss).backward()
        return sums

    def _weight(self, name: str) -> float:
        """An objective's weight at this step: the config's, the ``kd_*`` ones annealed to 0 over
        the run's last ``1 - kd_decay_start`` (a function of the step alone, so resume is exact)."""
        if not name.startswith("kd_"):
            return self.weights[name]
        return self.weights[name] * annealed(self.step, self.total_steps, self.config.kd_decay_start)

    def _memory(self) -> EmbeddingMemory | None:
        """The ITC memory once the run is ``itc_memory_start`` of the way through, else none."""
        if self.memory is None or self.step < self.config.itc_memory_start * self.total_steps:
            return None
        return self.memory

    def _draw_seed(self, micro_index: int) -> int:
        """Seed of the in-batch negative draws: a function of (seed, step, micro-batch) only, so
        every process, and one process alone, draws the same negatives for the same items."""
        return (self.config.seed * 1_000_003 + self.step) * 64 + micro_index

    def _optimizer_step(self, metrics: dict[str, float]) -> None:
        """Clip (optionally), step and clear the gradients; a non-finite norm stops the run."""
        if self.config.clip_grad_norm is not None:
            if self.scaler.is_enabled():
                self.scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.requires_grad]
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm))
            if not math.isfinite(metrics["grad_norm"]) and not self.scaler.is_enabled():
                self.optimizer.zero_grad(set_to_none=True)
                raise NonFiniteLossError(self._non_finite_message(metrics, what="gradient norm"))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the update when fp16 gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _non_finite_message(self, metrics: Mapping[str, float], what: str = "loss") -> str:
        parts = ", ".join(f"{k}={v:.6g}" for k, v in metrics.items())
        kept = (
            f"the last good checkpoint is kept: {self.last_checkpoint}"
            if self.last_checkpoint is not None
            else "no checkpoint had been written yet"
        )
        return (
            f"non-finite {what} at step {self.step + 1} ({parts}); the run stopped without applying "
            f"this update and {kept}. Lower --lr, set --clip-grad-norm, or use --precision fp32."
        )

    # --------------------------------------------------------------------------- checkpoints
    def _save(self, losses: dict[str, float], elapsed: float) -> None:
        """A resumable checkpoint of the state after ``self.step`` (all ranks call this)."""
        epoch, done_in_epoch = divmod(self.step, self.steps_per_epoch)
        rng = gather_objects(ckpt.capture_rng(), self.runtime)
        if self.runtime.is_main:
            state = {
                "task": self.config.task,
                "step": self.step,
                "total_steps": self.total_steps,
                "epoch": epoch,
                "epoch_step": done_in_epoch,
                "steps_per_epoch": self.steps_per_epoch,
                "global_batch": self.config.batch_size,
                "world_size": self.runtime.world_size,
                "samples_seen": self.step * self.config.batch_size,
                "schedule": dataclasses.asdict(self.schedule),  # lr is a pure function of the step
                "losses": losses,
                "elapsed_s": round(elapsed, 3),
                **({"trained_s": round(self.budget.trained_before_s + elapsed, 3)} if self.budget else {}),
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            ckpt.save_checkpoint(
                self.out,
                self.model,
                self.optimizer,
                state,
                rng,
                self.scaler,
                keep=self.config.keep_checkpoints,
                memory=self.memory.state_dict() if self.memory is not None else None,
                average=self.average.state_dict() if self.average is not None else None,
            )
            with self.average.applied(self.model) if self.average is not None else nullcontext():
                self.model.save_pretrained(self.out)  # the output folder is always a loadable model
        self.last_checkpoint = ckpt.step_dir(self.out, self.step)
        barrier(self.runtime)

    def _fit_heads(self) -> None:
        """``fit_heads``: the recognition heads' output layers fitted as linear probes on the
        trained encoder (:mod:`.head_fit`), then the output folder re-saved. The step checkpoint
        keeps the trained heads, so a resumed finished run fits them again, to the same result.
        The first rank fits; the others wait."""
        if self.runtime.is_main:
            t0 = time.perf_counter()
            teacher = None
            if self.config.fit_heads_teacher:
                require_teachers()
                teacher, _ = recognition_targets(
                    self.catalogue, self.model.label_maps, self.config.teacher_cache, self.config.progress
                )
            bar = progress_bar(len(self.catalogue), 0, "fit heads", "pair") if self.config.progress else None
            records = fit_recognition_heads(
                self.model, self.catalogue, self.image_size, self.config.resize,
                getattr(self.dataset, "image_cache", None), self.micro_batch, self.precision.autocast,
                bar.update if bar is not None else None, teacher, self.config.fit_heads_teacher,
            )  # fmt: skip
            if bar is not None:
                bar.close()
            self.model.save_pretrained(self.out)
            seconds = time.perf_counter() - t0
            soft = f", teachers' probabilities at {self.config.fit_heads_teacher:g}" if teacher else ""
            reads = " and the ITC embeddings" if self.model.config.recognition_reads_itc else ""
            for name, r in records.items():
                self.log.info(
                    f"fit heads: {name} output layer fitted as a linear probe on the [CLS]{reads}{soft} (L2 "
                    f"{r['l2']:g}, held-out accuracy {100 * r['held_out_acc']:.1f} %, train "
                    f"{100 * r['train_acc']:.1f} %); both heads in {seconds:.1f} s"
                )
        barrier(self.runtime)

    # ------------------------------------------------------------------------ logs and output
    def _open_logs(self) -> None:
        if self.runtime.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.out)
        self.log.open(self.resolved_config().to_yaml(), self.step, self.config.tensorboard)

    def resolved_config(self) -> TrainConfig:
        """The config with the values this run derived filled in (image size, peak lr, input
        schedule, loss weights); run length stays as given so ``--resume --epochs N`` can extend."""
        return self.config.replace(
            image_size=self.image_size,
            lr=self.schedule.peak,
            input_schedule=self.input_schedule,
            loss_weights=dict(self.weights),
        )

    def _banner(self) -> str:
        cfg, rt, m = self.config, self.runtime, self.model
        verb = f"resuming from {self.resume_from} (step {self.step})" if self.resume_from else "starting"
        frozen = m.num_parameters() - m.num_parameters(trainable_only=True)
        weights = ", ".join(f"{k}={v:g}" for k, v in self.weights.items() if v)
        return "\n".join((
            f"mvlt {cfg.task}: {verb}; output {self.out}",
            f"  model {cfg.model if not cfg.init else cfg.init}: {m.num_parameters() / 1e6:.2f} M parameters"
            f" ({frozen / 1e6:.2f} M frozen), vocab {m.config.vocab_size}, image {self.image_size} px",
            f"  data {cfg.data} [{cfg.split}]: {len(self.dataset)} items, {self.steps_per_epoch} steps/epoch",
            f"  {self.total_steps} steps × global batch {cfg.batch_size} ({rt.world_size} process(es) × "
            f"{cfg.accumulation} accumulation × {self.micro_batch}), peak lr {self.schedule.peak:.3g}, "
            f"warm-up {self.schedule.warmup}, min lr {self.schedule.floor:.3g}"
            + (f"; batches of {cfg.batch_groups}-item same-sub-category blocks" if cfg.batch_groups else ""),
            f"  recipe {cfg.recipe}: objectives {weights}; joint-pass inputs {self.input_schedule}; "
            f"ITM negatives {self.itm_negatives if self.weights['itm'] else '-'}; "
            f"augmentation {','.join(cfg.augment) if cfg.augment else 'none'}"
            + (f"; later sentences dropped at p {cfg.sentence_drop:g}" if cfg.sentence_drop else "")
            + (f"; the saved weights are a moving average, decay {cfg.ema_decay:g}" if cfg.ema_decay else ""),
            f"  device {rt.device}, precision {self.precision.name} ({self.precision.reason}), "
            f"{torch.get_num_threads()} thread(s)",
            *tag_lines(self.model.label_maps),
            *self.teacher_lines,
        ))  # fmt: skip

    def _log_metrics(self, window: Window) -> None:
        epoch = round(self.step / self.steps_per_epoch, 4)
        self.log.metrics(window.record(self.step, epoch, self.optimizer.param_groups[0]["lr"]), self.step)

    def _finish(
        self, start: int, started: float, losses: dict[str, float], interrupted: str | None
    ) -> TrainResult:
        seconds = time.perf_counter() - started
        result = TrainResult(
            out=self.out, steps=self.step, total_steps=self.total_steps, seconds=seconds, losses=losses,
            checkpoint=self.last_checkpoint, interrupted=interrupted,
        )  # fmt: skip
        if self.runtime.is_main:
            line = summary_line(result, self.config.task, self.step - start, self.config.batch_size)
            print(line, flush=True)
            self.log.info(line, echo=False)
        return result


def summary_line(result: TrainResult, task: str, steps_run: int, batch: int) -> str:
    """``mvlt pretrain: 30/30 steps in 12.1 s (19.8 samples/s) | loss 2.31 (mir 0.04, ...) | model: out``."""
    rate = steps_run * batch / result.seconds if result.seconds > 0 else 0.0
    parts = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items() if k in OBJECTIVES)
    loss = f"loss {result.losses['total']:.4g} ({parts})" if "total" in result.losses else "no loss logged"
    state = f"interrupted by {result.interrupted} at step" if result.interrupted else "done:"
    resume = " (continue with --resume)" if result.interrupted else ""
    return (
        f"mvlt {task} {state} {result.steps}/{result.total_steps} steps in {result.seconds:.1f} s "
        f"({rate:.1f} samples/s) | {loss} | model: {result.out} | checkpoint: {result.checkpoint}{resume}"
    )


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device`` (product ids and other non-tensors stay behind)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
