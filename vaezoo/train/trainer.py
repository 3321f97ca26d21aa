"""One training loop for every modality.

Reads like nanoGPT's: build, then ``for epoch: for batch: forward, backward, step``, with
the chores around it kept in small helpers: beta and learning rate are pure functions of
the step (``vaezoo.core.schedules``), batches come from a seeded sampler per epoch, and the
checkpoint holds everything needed to continue bit-for-bit on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vaezoo.core.batches import to_device
from vaezoo.train.checkpoints import (
    BEST,
    CHECKPOINTS,
    EVAL,
    METRICS,
    RECIPE,
    Checkpoint,
    load_weights,
    read_checkpoint,
    restore_rng,
    restore_optimizer,
    rewind_metrics,
    save_weights,
    write_checkpoint,
)
from vaezoo.core.files import fsync_path, is_temporary, remove_temporaries, write_json, write_text
from vaezoo.core.data import batches_in, first_examples, make_loader, random_batches, split_batches
from vaezoo.train.distributed import init_distributed
from vaezoo.core.errors import RecipeError, RunDirError, TrainingDiverged
from vaezoo.core.estimators import EvalResult, evaluate
from vaezoo.train.evaluation import evaluate_split
from vaezoo.core.progress import progress
from vaezoo.config.recipe import Recipe
from vaezoo.train.runs import build_modality, build_vae, pick_device, weights_metadata
from vaezoo.core.schedules import KLSchedule, LRSchedule
from vaezoo.core.seeds import derive_seed


# Optimisers with a fused kernel (one pass over all tensors) on these devices: on CPU it makes
# Adam's update 3x faster, ~10% of a small model's step.
FUSED_OPTIMIZERS = ("adam", "adamw", "sgd")
FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = {}
    if cfg.fused_optimizer and cfg.optimizer in FUSED_OPTIMIZERS and all(p.device.type in FUSED_DEVICES for p in tensors):
        fused = {"fused": True}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def parameter_groups(vae) -> list[dict]:
    """The encoder's parameters and all others as two named groups, so a step can move one side alone."""
    in_encoder = {id(p) for p in vae.encoder.parameters()}
    groups = [{"name": "encoder", "params": [p for p in vae.parameters() if id(p) in in_encoder]},
              {"name": "decoder", "params": [p for p in vae.parameters() if id(p) not in in_encoder]}]
    return [g for g in groups if g["params"]]


def keep_gradients_of(optimizer: torch.optim.Optimizer, name: str) -> None:
    """Drop the gradients outside group ``name``; optimisers skip parameters without one."""
    for group in optimizer.param_groups:
        if group.get("name") != name:
            for p in group["params"]:
                p.grad = None


# He et al. (2019) judge the inner encoder loop every 15 steps: it ends when a block's mean
# loss is no lower than the previous block's.
AGGRESSIVE_BLOCK = 15


def kl_schedule(recipe: Recipe) -> KLSchedule:
    o = recipe.objective
    return KLSchedule(o.kl_schedule, o.beta, o.kl_start, o.kl_warmup_steps, o.kl_period, o.kl_ratio, o.kl_midpoint, o.kl_steepness)


class MetricsLog:
    """metrics.jsonl plus TensorBoard scalars; silent on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, resumed_at: int | None = None):
        self.path = run_dir / METRICS
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the events a crashed run logged after its checkpoint, as the rewind does in metrics.jsonl.
            purge = None if resumed_at is None else resumed_at + 1
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def durable_size(self) -> int:
        """Flush metrics.jsonl to disk and return its length, which the next checkpoint records."""
        if not self.enabled or not self.path.exists():
            return 0
        fsync_path(self.path)
        return self.path.stat().st_size

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@dataclass
class Progress:
    """Where the loop is; saved in trainer_state.json."""

    step: int = 0                    # optimiser steps taken
    epoch: int = 0                   # current epoch (0-based)
    batch_in_epoch: int = 0          # micro-batches of this epoch already consumed
    best_loss: float = math.inf      # best validation loss (-ELBO) so far
    best_step: int = -1
    bad_validations: int = 0         # validations since the last improvement
    aggressive: bool = False         # in the aggressive-encoder phase (He et al. 2019)
    aggressive_mi: float | None = None  # validation MI at the last check of that phase
    window: dict = field(default_factory=dict)  # running sums for the next train record
    last_validation_step: int = -1   # so the end of training validates the last steps exactly once
    epoch_seconds: float = 0.0       # time in training steps so far this epoch (its timing record)
    epoch_batches: int = 0           # micro-batches trained so far this epoch, in this and earlier processes

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["best_loss"] = None if math.isinf(self.best_loss) else self.best_loss
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        """From trainer_state.json; ``ValueError`` names what does not fit."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(types))
        if unknown:
            raise ValueError(f"unknown progress keys {unknown}")
        for key in ("step", "epoch", "batch_in_epoch"):
            if not isinstance(d.get(key), int) or isinstance(d.get(key), bool) or d[key] < 0:
                raise ValueError(f"progress.{key} must be an integer >= 0, got {d.get(key)!r}")
        d = dict(d)
        d["best_loss"] = math.inf if d.get("best_loss") is None else d["best_loss"]
        return cls(**d)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_completed: int
    stopped_early: bool
    interrupted: bool
    best_validation_loss: float | None
    eval: EvalResult | None
    files: list[Path]
    is_main: bool = True             # False on DDP ranks other than 0


class Trainer:
    """Train ``recipe`` into ``run_dir`` (a new folder), or continue the run in ``run_dir``.

    ``on_step(trainer, record)`` is called after every optimiser step with the step's
    numbers; calling ``trainer.request_stop()`` from it (or pressing Ctrl-C) ends the run
    after the current step with a checkpoint that ``--resume`` continues exactly.
    """

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        *,
        resume: bool = False,
        on_step: Callable[["Trainer", dict], None] | None = None,
        progress_bar: bool = True,
        echo: Callable[[str], None] = lambda msg: tqdm.write(msg, file=sys.stderr),
    ):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.on_step = on_step
        self.progress_bar = progress_bar
        self.echo = echo
        self._stop_requested = False
        self._saved_step: int | None = None   # the step of the last checkpoint written or resumed from
        self._dirty = False                     # state or metrics changed since that checkpoint
        self.vae = None

    def request_stop(self) -> None:
        self._stop_requested = True

    # -- set-up ------------------------------------------------------------------------------
    def _check_run_dir(self) -> None:
        """A new run needs an empty folder; a resumed one its recipe. Never touches files."""
        if self.resume:
            if not (self.run_dir / RECIPE).is_file():
                raise RunDirError(f"{self.run_dir}: not a run directory ({RECIPE} is missing)")
        elif self.run_dir.exists() and (not self.run_dir.is_dir() or not all(map(is_temporary, self.run_dir.iterdir()))):
            raise RunDirError(
                f"{self.run_dir}: folder exists and is not empty; choose another --run-dir or continue it with --resume"
            )

    def _undo_new_run(self, existed: bool) -> None:
        """A new run that failed before its first checkpoint leaves its folder as it found it
        (absent, or empty), so the same --run-dir works on the retry."""
        if not existed:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        for child in self.run_dir.iterdir() if self.run_dir.is_dir() else []:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def _commit_resume(self, checkpoint: Checkpoint | None) -> None:
        """Every check of a resume has passed: only now are the run's files changed."""
        recipe_text = self.recipe.to_toml()
        if (self.run_dir / RECIPE).read_text(encoding="utf-8") != recipe_text:
            write_text(self.run_dir / RECIPE, recipe_text)     # the [train] / [eval] overrides
        remove_temporaries(self.run_dir)
        if checkpoint is not None:
            rewind_metrics(self.run_dir / METRICS, checkpoint)
            return
        # Killed before its first checkpoint: start over in place, keeping nothing of the first try.
        for leftover in (METRICS, BEST, EVAL):
            (self.run_dir / leftover).unlink(missing_ok=True)
        for folder in ("tensorboard", CHECKPOINTS):
            shutil.rmtree(self.run_dir / folder, ignore_errors=True)

    def _restore(self, checkpoint: Checkpoint, vae, optimizer, log_event: list) -> Progress:
        """Weights, optimiser and RNG state from ``checkpoint``; returns where the loop was."""
        cfg = self.recipe.train
        load_weights(vae, checkpoint.weights)
        try:
            state = Progress.from_dict(checkpoint.progress)
        except (ValueError, TypeError) as err:
            raise RunDirError(f"{checkpoint.path}: trainer state does not fit this vaezoo: {err}") from None
        if checkpoint.optimizer_kind not in (None, cfg.optimizer):
            # A new optimiser cannot use the old one's moments: it starts fresh, and the run says so.
            self.echo(f"warning: train.optimizer changed from {checkpoint.optimizer_kind!r} to {cfg.optimizer!r}; "
                      f"the {cfg.optimizer} state starts fresh at step {state.step}")
            log_event.append({"split": "event", "step": state.step, "epoch": state.epoch, "event": "optimizer_reset",
                              "from": checkpoint.optimizer_kind, "to": cfg.optimizer})
        else:
            restore_optimizer(optimizer, checkpoint)
        restore_rng(checkpoint.tensors, checkpoint.rng)
        # [train] keys may change on resume: the switch can end the phase, or start one that never ran.
        state.aggressive = cfg.aggressive_encoder and (state.aggressive or state.aggressive_mi is None)
        return state

    def _validate(self, vae, val_loader_fn, device) -> EvalResult:
        cfg = self.recipe.train
        return evaluate(
            vae, val_loader_fn(), iw_samples=0, max_examples=cfg.val_max_examples or None,
            device=device, seed=self.recipe.seed,
        )

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.recipe.train
        device = pick_device(cfg.device)
        ctx = init_distributed(device.type)
        if ctx.enabled and device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if not ctx.is_main:
            self.echo = lambda msg: None  # one voice under DDP
        try:
            self._check_run_dir()
            ctx.barrier()  # every rank has looked before rank 0 creates anything
            existed = self.run_dir.exists()
            try:
                return self._fit(ctx, device)
            except TrainingDiverged:
                raise              # its metrics show how it diverged; --resume can start it over
            except BaseException:
                if ctx.is_main and not self.resume and self._saved_step is None:
                    self._undo_new_run(existed)
                raise
        finally:
            ctx.close()

    def _fit(self, ctx, device) -> TrainResult:
        recipe, cfg = self.recipe, self.recipe.train
        modality = build_modality(recipe, self.run_dir)
        if cfg.aggressive_encoder and not modality.uses_latent:
            raise RecipeError(recipe.source, "[train] aggressive_encoder",
                              f"true needs a model that uses its latent variable, and this {recipe.modality} "
                              "model does not; set it to false")
        checkpoint = read_checkpoint(self.run_dir, self.echo) if self.resume else None   # reads, changes nothing
        if ctx.is_main and not self.resume:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_temporaries(self.run_dir)   # all a process killed while creating this run left
            write_text(self.run_dir / RECIPE, recipe.to_toml())
        if ctx.is_main and checkpoint is None:
            modality.fit(self.run_dir)
        ctx.barrier()
        torch.manual_seed(recipe.seed)
        vae = build_vae(modality).to(device)
        train_set = modality.dataset("train")
        val_set = modality.dataset("validation")
        self.vae = vae  # visible to on_step callbacks
        optimizer = make_optimizer(parameter_groups(vae), cfg)
        model = DistributedDataParallel(vae) if ctx.enabled else vae
        collate = modality.collate

        def train_loader(epoch: int, start: int):
            return make_loader(
                train_set, collate, cfg.batch_size, shuffle=True, seed=recipe.seed, epoch=epoch,
                rank=ctx.rank, world_size=ctx.world_size, start=start, drop_last=True, num_workers=cfg.num_workers,
            )

        def val_loader():
            return make_loader(val_set, collate, recipe.eval.batch_size, num_workers=cfg.num_workers)

        def encoder_batches(step: int):
            # Fresh batches for the aggressive inner loop, seeded by the step so a resume repeats them.
            return random_batches(train_set, collate, cfg.batch_size, seed=derive_seed(recipe.seed, "encoder-batches", step, ctx.rank))

        batches_per_epoch = train_loader(0, 0).batch_sampler.total()
        steps_per_epoch = -(-batches_per_epoch // cfg.grad_accum)
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        lr_at = LRSchedule(cfg.lr_schedule, cfg.warmup_steps, total_steps, cfg.min_lr_factor)
        beta_at = kl_schedule(recipe)

        state = Progress(aggressive=cfg.aggressive_encoder)
        events: list[dict] = []
        if checkpoint is not None:
            state = self._restore(checkpoint, vae, optimizer, events)
            self._saved_step = state.step
        if self.resume and ctx.is_main:
            self._commit_resume(checkpoint)
        ctx.barrier()
        if checkpoint is not None:
            self.echo(f"resuming {self.run_dir} at step {state.step} (epoch {state.epoch + 1}, batch {state.batch_in_epoch})")
        else:
            if self.resume:
                self.echo(f"{self.run_dir} has no checkpoint yet: starting it over from step 0")
            torch.manual_seed(recipe.seed + ctx.rank)  # distinct noise per rank; weights were seeded alike

        log = MetricsLog(self.run_dir, ctx.is_main, cfg.tensorboard, resumed_at=state.step if checkpoint else None)
        for event in events:
            log.write(event)
        metadata = lambda: weights_metadata(recipe, step=state.step, epoch=state.epoch)
        self._dirty = bool(events)   # state or metrics changed since the last checkpoint

        def checkpoint_now() -> None:
            if not all(bool(torch.isfinite(p).all()) for p in vae.parameters()):
                self._diverged(state.step, state.epoch, "the weights became non-finite")
            if ctx.is_main:
                write_checkpoint(self.run_dir, model=vae, metadata=metadata(), optimizer=optimizer,
                                 optimizer_kind=cfg.optimizer, progress=state.as_dict(), metrics_bytes=log.durable_size())
            self._saved_step = state.step
            self._dirty = False

        def validate() -> bool:
            """Validate, keep the best weights, return True when early stopping says stop."""
            result = self._validate(vae, val_loader, device)
            loss = -result.elbo
            log.write({"split": "validation", "step": state.step, "epoch": state.epoch, "loss": loss,
                       "elbo": result.elbo, "reconstruction": result.reconstruction, "kl": result.kl,
                       "active_units": result.active_units, "mutual_information": result.mutual_information})
            state.last_validation_step = state.step
            self._dirty = True
            improved = loss < state.best_loss - cfg.early_stopping_min_delta
            if improved:
                state.best_loss, state.best_step, state.bad_validations = loss, state.step, 0
                if ctx.is_main:
                    save_weights(vae, self.run_dir / BEST, metadata())
            else:
                state.bad_validations += 1
            self.echo(
                f"step {state.step} epoch {state.epoch + 1}: validation -ELBO {loss:.4f} (KL {result.kl:.3f}, "
                f"AU {result.active_units}, MI {result.mutual_information:.3f})" + (" *best*" if improved else "")
            )
            if result.active_units == 0 and modality.uses_latent:
                self.echo("warning: no active latent units (posterior collapse); consider KL annealing or free bits")
            if state.aggressive:
                end_aggressive_phase_if_mi_stalls(result.mutual_information)
            return bool(cfg.early_stopping_patience) and state.bad_validations >= cfg.early_stopping_patience

        def end_aggressive_phase_if_mi_stalls(mi: float) -> None:
            """He et al.: leave the aggressive phase for good once validation MI stops rising."""
            if state.aggressive_mi is not None and mi <= state.aggressive_mi:
                state.aggressive = False
                log.write({"split": "event", "step": state.step, "epoch": state.epoch, "event": "aggressive_off",
                           "mutual_information": mi, "previous_mutual_information": state.aggressive_mi})
                self.echo(f"aggressive encoder updates off from step {state.step}: validation MI {mi:.3f} "
                          f"did not rise above {state.aggressive_mi:.3f}")
            state.aggressive_mi = mi

        previous_handler = None
        if ctx.is_main and not ctx.enabled:
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

        stopped_early = interrupted = False
        show_bar = self.progress_bar and ctx.is_main
        started = time.perf_counter()
        try:
            while state.epoch < cfg.epochs and not (cfg.max_steps and state.step >= cfg.max_steps):
                loader = train_loader(state.epoch, state.batch_in_epoch)
                bar = tqdm(total=batches_per_epoch, initial=state.batch_in_epoch, disable=not show_bar,
                           desc=f"epoch {state.epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                           mininterval=0.5 if sys.stderr.isatty() else 10, file=sys.stderr)
                iterator = iter(loader)
                stop_now = False
                while state.batch_in_epoch < batches_per_epoch:
                    group = min(cfg.grad_accum, batches_per_epoch - state.batch_in_epoch)
                    tick = time.perf_counter()
                    record = self._step(model, vae, optimizer, iterator, group, state, lr_at, beta_at, device, ctx,
                                        encoder_batches)
                    state.epoch_seconds += time.perf_counter() - tick   # time in training steps alone, for throughput
                    state.epoch_batches += group
                    self._dirty = True
                    bar.update(group)
                    # refresh=False: the bar redraws at its own interval, not on every step (CI logs).
                    bar.set_postfix(loss=f"{record['loss']:.3f}", kl=f"{record['kl']:.2f}",
                                    beta=f"{record['beta']:.2f}", refresh=False)
                    self._log_window(state, record, log, cfg.log_every)
                    if self.on_step is not None:
                        self.on_step(self, record)
                    validate_now = cfg.eval_every and state.step % cfg.eval_every == 0
                    if validate_now and validate():
                        stop_now = stopped_early = True
                    if validate_now or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0):
                        checkpoint_now()
                    if ctx.any(self._stop_requested):
                        stop_now = interrupted = True
                    if stop_now or (cfg.max_steps and state.step >= cfg.max_steps):
                        break
                bar.close()
                if interrupted:
                    checkpoint_now()
                    break
                if state.batch_in_epoch >= batches_per_epoch:
                    self._log_epoch_timing(state, log, cfg.batch_size * ctx.world_size)
                    if not cfg.eval_every and validate():
                        stopped_early = True
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    checkpoint_now()
                if stopped_early:
                    self.echo(f"early stopping: no improvement in {cfg.early_stopping_patience} validations")
                    break
            if not interrupted:
                self._log_epoch_timing(state, log, cfg.batch_size * ctx.world_size)  # an epoch cut short
                if state.window.get("n"):
                    self._log_window(state, {}, log, every=1)  # the last, shorter window
                    self._dirty = True
                if state.step > 0 and state.last_validation_step != state.step:
                    validate()  # the steps since the last validation count for best.safetensors too
                if self._dirty:
                    checkpoint_now()
        except TrainingDiverged as err:
            log.write({"split": "event", "step": state.step, "epoch": state.epoch, "event": "diverged", "message": str(err)})
            log.close()
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

        elapsed = time.perf_counter() - started
        files: list[Path] = []
        result: EvalResult | None = None
        if interrupted:
            self.echo(f"interrupted at step {state.step}; continue with: vaezoo train --resume {self.run_dir}")
        elif ctx.is_main:
            self.echo(f"trained {state.step} steps in {elapsed:.1f}s")
            files, result = self._finish(modality, vae, device, log, state)
        log.close()
        return TrainResult(self.run_dir, state.step, state.epoch, stopped_early, interrupted,
                           None if math.isinf(state.best_loss) else state.best_loss, result, files, ctx.is_main)

    @staticmethod
    def _log_epoch_timing(state: Progress, log: MetricsLog, examples_per_batch: int) -> None:
        """One record per finished epoch; its time is summed over interruptions (kept in the checkpoint)."""
        if state.epoch_batches:
            log.write({"split": "timing", "step": state.step, "epoch": state.epoch, "train_seconds": state.epoch_seconds,
                       "examples_per_second": state.epoch_batches * examples_per_batch / max(state.epoch_seconds, 1e-9)})
        state.epoch_seconds, state.epoch_batches = 0.0, 0

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True
        self.echo("stopping after this step (press Ctrl-C again to abort without a checkpoint)")

    def _forward(self, model, batch, beta: float, device):
        obj = self.recipe.objective
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if self.recipe.train.bf16 else nullcontext()
        with autocast:
            return model(batch, beta=beta, free_bits=obj.free_bits, objective=obj.kind, iwae_samples=obj.iwae_samples)

    def _encoder_steps(self, model, vae, optimizer, batches, beta, device, ctx, state) -> int:
        """The inner loop of He et al. (2019), Algorithm 1: encoder-only steps on fresh batches
        until the loss stops falling (judged per block of AGGRESSIVE_BLOCK steps). Returns the count."""
        cfg = self.recipe.train
        previous_block, block, taken = math.inf, 0.0, 0
        while taken < cfg.aggressive_max_inner:
            optimizer.zero_grad(set_to_none=True)
            out = self._forward(model, to_device(next(batches), device), beta, device)
            out.loss.backward()
            loss = out.loss.item()
            if ctx.any(not math.isfinite(loss)):
                self._diverged(state.step + 1, state.epoch, f"loss {loss:.4g} in an aggressive encoder step")
            keep_gradients_of(optimizer, "encoder")
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(vae.encoder.parameters(), cfg.grad_clip)
            optimizer.step()
            taken += 1
            block += loss
            if taken % AGGRESSIVE_BLOCK == 0:
                # Every rank leaves together, or DDP would wait forever on the one that stayed.
                if ctx.any(block >= previous_block):
                    break
                previous_block, block = block, 0.0
        return taken

    def _step(self, model, vae, optimizer, iterator, group, state, lr_at, beta_at, device, ctx, encoder_batches) -> dict:
        """One optimiser step over ``group`` micro-batches; in the aggressive phase, a decoder
        step after the encoder has been trained alone (``encoder_batches(step)`` feeds it)."""
        cfg = self.recipe.train
        beta = beta_at(state.step)
        lr = cfg.lr * lr_at(state.step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        model.train()
        encoder_steps = 0
        if state.aggressive:
            encoder_steps = self._encoder_steps(model, vae, optimizer, encoder_batches(state.step), beta, device, ctx, state)
        optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "elbo": 0.0, "reconstruction": 0.0, "kl": 0.0}
        loss_finite = True
        for i in range(group):
            batch = to_device(next(iterator), device)
            sync = model.no_sync() if ctx.enabled and i < group - 1 else nullcontext()
            with sync:
                out = self._forward(model, batch, beta, device)
                (out.loss / group).backward()
            # One host sync for the four numbers, not four.
            values = torch.stack([out.loss, out.elbo.mean(), out.reconstruction.mean(), out.kl.mean()]).float().tolist()
            loss_finite &= math.isfinite(values[0])
            for key, value in zip(sums, values):
                sums[key] += value / group
        # The gradient norm costs ~10% of a small model's step on CPU, so it is taken only when
        # clipping needs it or the step is logged. Non-finite gradients that slip through show up
        # as a non-finite loss one step later, and no checkpoint is written with non-finite weights.
        if state.aggressive:
            keep_gradients_of(optimizer, "decoder")  # the encoder had its turn
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.grad_clip).item()
        elif (state.step + 1) % cfg.log_every == 0:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in vae.parameters() if p.grad is not None]).item()
        if ctx.any(not (loss_finite and (grad_norm is None or math.isfinite(grad_norm)))):
            what = f"loss {sums['loss']:.4g}" + ("" if grad_norm is None else f", gradient norm {grad_norm:.4g}")
            self._diverged(state.step + 1, state.epoch, what)
        optimizer.step()
        state.step += 1
        state.batch_in_epoch += group
        record = {"split": "train", "step": state.step, "epoch": state.epoch, "lr": lr, "beta": beta,
                  "grad_norm": grad_norm, **sums}
        if cfg.aggressive_encoder:
            record["encoder_steps"] = encoder_steps
        return record

    def _diverged(self, step: int, epoch: int, what: str) -> None:
        kept = (f"the last good checkpoint (step {self._saved_step}) is kept in {self.run_dir}"
                if self._saved_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(
            f"training diverged at step {step} (epoch {epoch + 1}): {what}; {kept}. "
            "Try a lower train.lr or set train.grad_clip"
        )

    @staticmethod
    def _log_window(state: Progress, record: dict, log: MetricsLog, every: int) -> None:
        """Average train numbers over windows of ``every`` steps (sums live in the checkpoint)."""
        w = state.window
        if record:
            for key in ("loss", "elbo", "reconstruction", "kl", "encoder_steps"):
                if key in record:
                    w[key] = w.get(key, 0.0) + record[key]
            w["n"] = w.get("n", 0) + 1
            if record["grad_norm"] is not None:
                w["grad_norm_sum"] = w.get("grad_norm_sum", 0.0) + record["grad_norm"]
                w["grad_norm_n"] = w.get("grad_norm_n", 0) + 1
            w["lr"], w["beta"] = record["lr"], record["beta"]
        if state.step % every == 0:
            n = w.pop("n")
            out = {"split": "train", "step": state.step, "epoch": state.epoch, "lr": w.pop("lr"), "beta": w.pop("beta")}
            if w.get("grad_norm_n"):
                out["grad_norm"] = w.pop("grad_norm_sum") / w.pop("grad_norm_n")
            out.update({k: v / n for k, v in w.items()})
            log.write(out)
            state.window = {}

    def _finish(self, modality, vae, device, log: MetricsLog, state: Progress) -> tuple[list[Path], EvalResult | None]:
        """Leave something to look at: prior samples, reconstructions, and the eval table."""
        recipe = self.recipe
        best = self.run_dir / BEST
        weights, weights_step = "last", state.step
        if best.exists():
            weights, weights_step = "best", int(load_weights(vae, best).get("step", state.best_step))
        vae.eval()
        files: list[Path] = []
        samples_dir = self.run_dir / "samples"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            if recipe.train.samples:
                _, px = vae.sample(recipe.train.samples, generator=torch.Generator(device).manual_seed(recipe.seed))
                files += modality.write_samples(px, samples_dir / "prior")
            batch = to_device(first_examples(modality.dataset("validation"), modality.collate, 8), device)
            _, px = vae.reconstruct(batch)
            files += modality.write_reconstructions(batch, px, samples_dir / "reconstructions")
        result = None
        if recipe.eval.at_end:
            result = evaluate_split(modality, vae, recipe.eval.split, device=device, show_progress=self.progress_bar)
            write_json(self.run_dir / EVAL, {"split": recipe.eval.split, "step": state.step, "weights": weights,
                                             "weights_step": weights_step, **result.as_dict()})
            log.write({"split": f"eval/{recipe.eval.split}", "step": state.step, "epoch": state.epoch,
                       **{k: v for k, v in result.as_dict().items() if isinstance(v, (int, float)) and v is not None}})
            files.append(self.run_dir / EVAL)
        from vaezoo.analysis.curves import write_curves  # matplotlib loads only here, once a run ends

        files += write_curves(self.run_dir)
        return files, result
