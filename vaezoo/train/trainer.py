"""One training loop for every modality, with hooks for everything around it.

``Trainer.fit`` sets a run up (a new folder, or a resume from its last complete
checkpoint), then runs ``_loop``, which reads like nanoGPT's: for each epoch, for each group
of micro-batches, forward, backward, optimiser step. Validation and early stopping,
checkpoints, metrics, the progress bar and the aggressive-encoder phase are hooks
(``vaezoo.train.hooks``) called at fixed points; a hook may own networks and optimisers,
and its state goes into the same crash-safe checkpoint as the model. Beta and the learning
rate are pure functions of the step, batches come from a seeded sampler per epoch, so a
resumed run continues bit for bit on CPU.
"""

from __future__ import annotations

import gc
import math
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vaezoo.config.recipe import Recipe
from vaezoo.core.batches import Batch, channels_last, pin_memory, to_device
from vaezoo.core.data import EpochBatchSampler, examples_at, first_examples, random_batches
from vaezoo.core.errors import RecipeError, RunDirError, TrainingDiverged
from vaezoo.core.estimators import EvalResult
from vaezoo.core.progress import progress_bars
from vaezoo.core.model import VAE
from vaezoo.core.files import is_temporary, remove_temporaries, write_json, write_text
from vaezoo.core.objectives import ObjectiveOutput, build_objective
from vaezoo.core.schedules import KLSchedule, LRSchedule
from vaezoo.core.seeds import derive_seed, seed_global_generators
from vaezoo.train.checkpoints import (
    BEST,
    CHECKPOINTS,
    EVAL,
    METRICS,
    RECIPE,
    Checkpoint,
    load_weights,
    read_checkpoint,
    restore_optimizer,
    restore_rng,
    rewind_metrics,
)
from vaezoo.train.distributed import DistContext, init_distributed, rank_device
from vaezoo.train.evaluation import ShardedEvaluation, evaluate_split
from vaezoo.train.hooks import AggressiveEncoder, Checkpointing, Hook, ProgressBar, StepCallback, TrainMetrics, Validation
from vaezoo.train.hooks.adversarial import AdversarialStage
from vaezoo.train.hooks.base import EVENTS, overrides
from vaezoo.train.hooks.ranks import RankStreams
from vaezoo.train.loading import EpochLoader
from vaezoo.train.metrics import MetricsLog
from vaezoo.train.optim import make_optimizer
from vaezoo.train.samples import condition_of, write_decoded
from vaezoo.train.runs import build_modality, build_vae, pick_device, resolve_condition, weights_metadata

if TYPE_CHECKING:
    from vaezoo.plugin.protocol import Modality


#: a conditional run writes prior samples of at most this many classes when it ends
SAMPLED_CLASSES = 32


def freeze_heap() -> bool:
    """Move every object alive now (torch's modules, the datasets, ...) out of the garbage
    collector's sight for the loop. Each step creates a few short-lived objects; without this,
    every few hundred steps a full collection walks the whole heap (0.1 s on a small model's
    run, 5% of an epoch). Returns whether it froze (not when someone else already has)."""
    if gc.get_freeze_count():
        return False
    gc.collect()
    gc.freeze()
    return True


def kl_schedule(recipe: Recipe) -> KLSchedule:
    o = recipe.objective
    return KLSchedule(o.kl_schedule, o.beta, o.kl_start, o.kl_warmup_steps, o.kl_period, o.kl_ratio, o.kl_midpoint, o.kl_steepness)


@dataclass
class LoopState:
    """Where the loop is; the ``progress`` of trainer_state.json."""

    step: int = 0            # optimiser steps taken
    epoch: int = 0           # current epoch (0-based)
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LoopState":
        """From trainer_state.json (0.1 files hold more keys: the hooks' state); ``ValueError``
        names what does not fit."""
        for key in ("step", "epoch", "batch_in_epoch"):
            if not isinstance(d.get(key), int) or isinstance(d.get(key), bool) or d[key] < 0:
                raise ValueError(f"progress.{key} must be an integer >= 0, got {d.get(key)!r}")
        return cls(d["step"], d["epoch"], d["batch_in_epoch"])


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

    ``hooks`` are added to the built-in ones (before metrics, validation and checkpoints, so
    what they add to a step's record is logged and their state is checkpointed).
    ``on_step(trainer, record)`` is called after every optimiser step with the step's
    numbers; calling ``trainer.request_stop()`` from it (or pressing Ctrl-C) ends the run
    after the current step with a checkpoint that ``--resume`` continues exactly.
    """

    # Set up by fit(), before any hook is called:
    ctx: DistContext
    device: torch.device
    modality: "Modality"
    vae: VAE
    objective: torch.nn.Module    # the objective around the VAE (a hook's on_setup may wrap it)
    model: torch.nn.Module        # the objective, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    train_set: Any                # map-style datasets of the modality
    val_set: Any
    batches_per_epoch: int
    lr_at: LRSchedule
    beta_at: KLSchedule
    log: MetricsLog

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        *,
        resume: bool = False,
        on_step: Callable[["Trainer", dict], None] | None = None,
        hooks: Sequence[Hook] = (),
        progress_bar: bool = True,
        echo: Callable[[str], None] = lambda msg: tqdm.write(msg, file=sys.stderr),
    ):
        self.recipe = recipe
        self.cfg = recipe.train
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress_bar = progress_bar
        self.echo = echo
        self.validation = Validation()
        adversarial = [AdversarialStage(recipe.adversarial)] if recipe.adversarial.enabled else []
        # RankStreams first: a resumed rank takes its random streams back before any hook draws.
        self.hooks: list[Hook] = [RankStreams(), AggressiveEncoder(), *adversarial, *hooks, TrainMetrics(),
                                  *([StepCallback(on_step)] if on_step is not None else []),
                                  ProgressBar(progress_bar), self.validation, Checkpointing()]
        names = [hook.name for hook in self.hooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates or not all(names):
            raise ValueError(f"every hook needs a unique, non-empty name; repeated: {duplicates}")
        self._handlers = {event: [getattr(h, event) for h in self.hooks if overrides(h, event)] for event in EVENTS}
        self.state = LoopState()
        self.saved_step: int | None = None   # the step of the last checkpoint written or resumed from
        self.interrupted = self.stopped_early = False
        self._stop_requested = False
        self.beta = 0.0                      # beta of the step in progress
        self.excluded_seconds = 0.0          # time spent validating, left out of the epochs' training time
        self._validation_data: ShardedEvaluation | None = None   # built at the first validation
        self._train_loader: EpochLoader | None = None            # with num_workers: built in the first epoch

    # -- what hooks use ----------------------------------------------------------------------
    def hook(self, name: str) -> Hook:
        return next(h for h in self.hooks if h.name == name)

    def request_stop(self) -> None:
        """End after the current step with a checkpoint (Ctrl-C does this)."""
        self._stop_requested = True

    def stop_early(self) -> None:
        """End the run normally after this step: last validation, checkpoint, evaluation."""
        self.stopped_early = True

    def autocast(self):
        """bfloat16 autocast when the recipe asks for it (``train.bf16``), else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.cfg.bf16 else nullcontext()

    def forward(self, batch: Batch, beta: float) -> ObjectiveOutput:
        with self.autocast():
            return self.model(batch, beta=beta)

    def clip_gradients(self, parameters: Iterable[torch.Tensor]) -> float | None:
        if self.cfg.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(parameters, self.cfg.grad_clip).item()
        return None

    def validate_now(self) -> EvalResult:
        """The validation figures, each rank evaluating its share (every rank calls this)."""
        if self._validation_data is None:
            self._validation_data = ShardedEvaluation(self.val_set, self.modality.collate, self.recipe.eval.batch_size,
                                                      self.cfg.val_max_examples or None, self.ctx,
                                                      num_workers=self.cfg.num_workers)
        return self._validation_data.run(self.vae, iw_samples=0, device=self.device, seed=self.recipe.seed)

    def random_train_batches(self, purpose: str) -> Iterator[Batch]:
        """Endless fresh training batches for ``purpose`` at this step and rank (a resume repeats them)."""
        seed = derive_seed(self.recipe.seed, purpose, self.state.step, self.ctx.rank)
        return random_batches(self.train_set, self.modality.collate, self.cfg.batch_size, seed=seed)

    def weights_metadata(self) -> dict[str, str]:
        return weights_metadata(self.recipe, step=self.state.step, epoch=self.state.epoch)

    def check_weights_finite(self) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in self.vae.parameters()):
            self.diverged("the weights became non-finite", step=self.state.step)

    def diverged(self, what: str, *, step: int) -> None:
        kept = (f"the last good checkpoint (step {self.saved_step}) is kept in {self.run_dir}"
                if self.saved_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"training diverged at step {step} (epoch {self.state.epoch + 1}): {what}; {kept}. "
                               "Try a lower train.lr or set train.grad_clip")

    def _call(self, event: str, *args) -> None:
        for handler in self._handlers[event]:
            handler(self, *args)

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        cfg, state = self.cfg, self.state
        self._call("on_fit_start")
        while state.epoch < cfg.epochs and not self._at_max_steps() and not self.stopped_early:
            self._call("on_epoch_start")
            batches = self._epoch_batches()
            while state.batch_in_epoch < self.batches_per_epoch:
                group = min(cfg.grad_accum, self.batches_per_epoch - state.batch_in_epoch)
                record = self._optimizer_step(batches, group)
                self._call("after_step", record)
                self.interrupted = self.ctx.any(self._stop_requested)
                if self.interrupted or self.stopped_early or self._at_max_steps():
                    break
            if self.interrupted:
                break
            if state.batch_in_epoch >= self.batches_per_epoch:
                self._call("on_epoch_end")
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        if not self.interrupted:
            self._call("on_train_end")
        self._call("on_fit_end")

    def _optimizer_step(self, batches: Iterator[Batch], group: int) -> dict:
        """One optimiser step over ``group`` micro-batches (gradient accumulation)."""
        cfg, state, optimizer = self.cfg, self.state, self.optimizer
        self.beta = beta = self.beta_at(state.step)
        lr = cfg.lr * self.lr_at(state.step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        self._call("before_step")
        optimizer.zero_grad(set_to_none=True)
        loss = rec = kl = 0.0
        extra: dict[str, float] = {}
        for i in range(group):
            batch = next(batches) if self.device.type == "cpu" else to_device(next(batches), self.device)
            if cfg.channels_last:
                batch = channels_last(batch)
            # DDP averages gradients once per optimiser step: at the last micro-batch.
            sync = self.ddp.no_sync() if self.ddp is not None and i < group - 1 else nullcontext()
            with sync:
                out = self.forward(batch, beta)
                (out.loss / group).backward()
            # One host sync per micro-batch for the numbers of the log, not one per number; an
            # objective's own figures (beta-TCVAE's terms, the adversarial stage's) come along.
            micro_loss, micro_rec, micro_kl, *micro_extra = torch.stack(
                [out.loss, out.reconstruction.mean(), out.mean_kl, *out.extra.values()]).detach().tolist()
            loss, rec, kl = loss + micro_loss / group, rec + micro_rec / group, kl + micro_kl / group
            for name, value in zip(out.extra, micro_extra):
                extra[name] = extra.get(name, 0.0) + value / group
        self._call("after_backward")
        # The gradient norm costs ~10% of a small model's step on CPU, so it is taken only when
        # clipping needs it or the step is logged. Non-finite gradients that slip through show up
        # as a non-finite loss one step later, and no checkpoint is written with non-finite weights.
        grad_norm = self.clip_gradients(self.vae.parameters())
        if grad_norm is None and (state.step + 1) % cfg.log_every == 0:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.vae.parameters() if p.grad is not None]).item()
        if self.ctx.enabled:
            # The global batch's figures on every rank (each rank holds its share's). The same
            # one collective tells every rank of a non-finite loss on any: the mean is one too.
            # (The gradient norm is of the averaged gradients: the same on every rank already.)
            loss, rec, kl, *values = self.ctx.mean([loss, rec, kl, *extra.values()])
            extra = dict(zip(extra, values))
        if not (math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))):
            what = f"loss {loss:.4g}" + ("" if grad_norm is None else f", gradient norm {grad_norm:.4g}")
            self.diverged(what, step=state.step + 1)
        optimizer.step()
        state.step += 1
        state.batch_in_epoch += group
        return {"split": "train", "step": state.step, "epoch": state.epoch, "lr": lr, "beta": beta,
                "grad_norm": grad_norm, "loss": loss, "elbo": rec - kl, "reconstruction": rec, "kl": kl,
                **extra, "batches": group}

    def _at_max_steps(self) -> bool:
        return bool(self.cfg.max_steps) and self.state.step >= self.cfg.max_steps

    def _epoch_batches(self) -> Iterator[Batch]:
        """The rest of this epoch's micro-batches, in the seeded order of (seed, epoch)."""
        if self.cfg.num_workers:   # one loader for the run: its workers persist from epoch to epoch
            if self._train_loader is None:
                self._train_loader = EpochLoader(self.train_set, self.modality.collate, self._sampler,
                                                 seed=self.recipe.seed, rank=self.ctx.rank,
                                                 num_workers=self.cfg.num_workers, pin_memory=self.pinned)
            return self._train_loader.epoch(self.state.epoch, self.state.batch_in_epoch)
        sampler = self._sampler(self.state.epoch, self.state.batch_in_epoch)
        # In this process, the sampler's batches go straight to the dataset (as a DataLoader
        # without workers does, minus its per-batch machinery).
        batches = (examples_at(self.train_set, self.modality.collate, indices) for indices in sampler)
        return (pin_memory(batch) for batch in batches) if self.pinned else batches

    @property
    def pinned(self) -> bool:
        """Whether training batches are pinned: ``[train] pin_memory`` on a CUDA device."""
        return self.cfg.pin_memory and self.device.type == "cuda"

    def _sampler(self, epoch: int, start: int) -> EpochBatchSampler:
        return EpochBatchSampler(len(self.train_set), self.cfg.batch_size, shuffle=True, seed=self.recipe.seed,
                                 epoch=epoch, rank=self.ctx.rank, world_size=self.ctx.world_size, drop_last=True,
                                 start=start)

    # -- set-up and the end ----------------------------------------------------------------------
    def fit(self) -> TrainResult:
        device = pick_device(self.cfg.device)
        self.ctx = ctx = init_distributed(device.type)
        self.device = device = rank_device(device, ctx)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        if not ctx.is_main:
            self.echo = lambda msg: None  # one voice under DDP
        try:
            self._check_run_dir()
            ctx.barrier()  # every rank has looked before rank 0 creates anything
            existed = self.run_dir.exists()
            try:
                # progress_bar=False (--no-progress) silences every bar, the plugin's data
                # preparation (decoding, tokenizing) and the evaluation's too.
                with progress_bars(self.progress_bar):
                    return self._fit()
            except TrainingDiverged:
                raise              # its metrics show how it diverged; --resume can start it over
            except BaseException:
                if ctx.is_main and not self.resume and self.saved_step is None:
                    self._undo_new_run(existed)
                raise
        finally:
            ctx.close()

    def _fit(self) -> TrainResult:
        recipe, cfg, ctx = self.recipe, self.cfg, self.ctx
        self.modality = modality = build_modality(recipe, self.run_dir)
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
        if resolve_condition(recipe, modality) and ctx.is_main and not self.resume:
            # the classes the data named become the run's own (a resume writes them in _commit_resume)
            write_text(self.run_dir / RECIPE, recipe.to_toml())
        torch.manual_seed(recipe.seed)
        self.vae = vae = build_vae(modality).to(self.device)
        if cfg.channels_last:
            vae.to(memory_format=torch.channels_last)
        if cfg.pin_memory and self.device.type != "cuda":
            self.echo(f"[train] pin_memory only applies to CUDA devices; ignored on {self.device.type}")
        self.train_set = modality.dataset("train")
        self.val_set = modality.dataset("validation")
        self.optimizer = make_optimizer(vae.parameters(), cfg)
        self.objective = build_objective(recipe.objective.kind, vae, recipe.objective, dataset_size=len(self.train_set))
        self._call("on_setup")   # hooks build their networks (and may wrap the objective) before a resume loads them
        self.ddp = DistributedDataParallel(self.objective) if ctx.enabled else None
        self.model = self.ddp if self.ddp is not None else self.objective
        if cfg.compile:   # after DDP wraps it, as torch recommends; the weights stay self.vae's
            self.model = torch.compile(self.model)  # type: ignore[assignment]  # a module's stand-in
        self.batches_per_epoch = self._sampler(0, 0).total()
        steps_per_epoch = -(-self.batches_per_epoch // cfg.grad_accum)
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        self.lr_at = LRSchedule(cfg.lr_schedule, cfg.warmup_steps, total_steps, cfg.min_lr_factor)
        self.beta_at = kl_schedule(recipe)

        events: list[dict] = []
        if checkpoint is not None:
            self._restore(checkpoint, events)
            self.saved_step = self.state.step
        if self.resume and ctx.is_main:
            self._commit_resume(checkpoint)
        ctx.barrier()
        if checkpoint is not None:
            s = self.state
            self.echo(f"resuming {self.run_dir} at step {s.step} (epoch {s.epoch + 1}, batch {s.batch_in_epoch})")
        else:
            if self.resume:
                self.echo(f"{self.run_dir} has no checkpoint yet: starting it over from step 0")
            seed_global_generators(recipe.seed + ctx.rank)  # distinct noise per rank; weights were seeded alike

        self.log = MetricsLog(self.run_dir, ctx.is_main, cfg.tensorboard, resumed_at=self.state.step if checkpoint else None)
        for event in events:
            self.log.write(event)
        vae.train()   # evaluation switches to eval mode and back; nothing else changes it
        previous_handler = None
        if ctx.is_main and not ctx.enabled:
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        started = time.perf_counter()
        frozen = freeze_heap()
        try:
            self._loop()
        except TrainingDiverged as err:
            self.log.write({"split": "event", "step": self.state.step, "epoch": self.state.epoch, "event": "diverged",
                            "message": str(err)})
            self.log.close()
            raise
        finally:
            self._train_loader = self._validation_data = None   # their worker processes end with them
            if frozen:
                gc.unfreeze()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

        files: list[Path] = []
        result: EvalResult | None = None
        if self.interrupted:
            self.echo(f"interrupted at step {self.state.step}; continue with: vaezoo train --resume {self.run_dir}")
        else:
            self.echo(f"trained {self.state.step} steps in {time.perf_counter() - started:.1f}s")
            files, result = self._finish()   # every rank: the evaluation is shared out
        self.log.close()
        best = self.validation.best
        return TrainResult(self.run_dir, self.state.step, self.state.epoch, self.stopped_early, self.interrupted,
                           best, result, files, ctx.is_main)

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True
        self.echo("stopping after this step (press Ctrl-C again to abort without a checkpoint)")

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

    def _restore(self, checkpoint: Checkpoint, events: list) -> None:
        """Weights, optimiser, RNG and every hook's state from ``checkpoint``."""
        cfg = self.cfg
        load_weights(self.vae, checkpoint.weights)
        try:
            self.state = LoopState.from_dict(checkpoint.progress)
            for hook in self.hooks:
                # Checkpoints from before the hooks kept their state in "progress".
                hook.load_state_dict(checkpoint.progress if checkpoint.hooks is None else checkpoint.hooks.get(hook.name, {}))
        except (ValueError, TypeError, KeyError) as err:
            raise RunDirError(f"{checkpoint.path}: trainer state does not fit this vaezoo: {err}") from None
        if checkpoint.optimizer_kind not in (None, cfg.optimizer):
            # A new optimiser cannot use the old one's moments: it starts fresh, and the run says so.
            self.echo(f"warning: train.optimizer changed from {checkpoint.optimizer_kind!r} to {cfg.optimizer!r}; "
                      f"the {cfg.optimizer} state starts fresh at step {self.state.step}")
            events.append({"split": "event", "step": self.state.step, "epoch": self.state.epoch, "event": "optimizer_reset",
                           "from": checkpoint.optimizer_kind, "to": cfg.optimizer})
        else:
            restore_optimizer(self.optimizer, checkpoint)
        restore_rng(checkpoint.tensors, checkpoint.rng)

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

    def _finish(self) -> tuple[list[Path], EvalResult | None]:
        """Leave something to look at: prior samples, reconstructions, and the eval table. Rank 0
        reads the weights and writes the files; every rank takes its share of the evaluation."""
        recipe, modality, vae, device, ctx = self.recipe, self.modality, self.vae, self.device, self.ctx
        best = self.run_dir / BEST
        weights, weights_step = "last", self.state.step
        if ctx.is_main and best.exists():
            weights, weights_step = "best", int(load_weights(vae, best).get("step", self.validation.best_step))
        ctx.broadcast_(vae.state_dict().values())   # the weights rank 0 evaluates, on every rank
        vae.eval()
        files = self._write_samples() if ctx.is_main else []
        result = None
        if recipe.eval.at_end:
            result = evaluate_split(modality, vae, recipe.eval.split, device=device, show_progress=self.progress_bar,
                                    ctx=ctx)
            if ctx.is_main:
                write_json(self.run_dir / EVAL, {"split": recipe.eval.split, "step": self.state.step, "weights": weights,
                                                 "weights_step": weights_step, **result.as_dict(), **condition_of(vae)})
                files.append(self.run_dir / EVAL)
            self.log.write({"split": f"eval/{recipe.eval.split}", "step": self.state.step, "epoch": self.state.epoch,
                            **{k: v for k, v in result.as_dict().items() if isinstance(v, (int, float)) and v is not None}})
        return files, result if ctx.is_main else None

    def _write_samples(self) -> list[Path]:
        """Prior samples and reconstructions of the first validation examples."""
        recipe, modality, vae, device = self.recipe, self.modality, self.vae, self.device
        files: list[Path] = []
        samples_dir = self.run_dir / "samples"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            if recipe.train.samples:
                generator = torch.Generator(device).manual_seed(recipe.seed)
                if vae.condition is None:
                    _, px = vae.sample(recipe.train.samples, generator=generator)
                    files += modality.write_samples(px, samples_dir / "prior")
                else:   # the same latents for each of the first classes: a row per class
                    classes = range(min(vae.condition.classes, SAMPLED_CLASSES))
                    with torch.no_grad():
                        z = vae.prior.sample(max(4, -(-recipe.train.samples // len(classes))), generator=generator,
                                             device=device, dtype=next(vae.parameters()).dtype)
                    files += write_decoded(vae, modality, z, samples_dir / "prior", classes)
            batch = to_device(first_examples(self.val_set, modality.collate, 8), device)
            _, px = vae.reconstruct(batch)
            files += modality.write_reconstructions(batch, px, samples_dir / "reconstructions")
        return files
