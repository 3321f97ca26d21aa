"""The hook surface of the training loop.

A hook is a piece of training behaviour that the loop (``vaezoo.train.trainer.Trainer``)
calls at fixed points. Subclass ``Hook`` and override the methods you need; the loop calls
each method on every hook, in the order of the trainer's hook list:

    on_setup(trainer)                      once, when the VAE, its optimiser and the objective
                                           are built, before a resume loads the hooks' state
                                           and before DDP wraps the objective: build your
                                           networks and optimisers here; you may wrap
                                           ``trainer.objective`` (an ``Objective`` module)
    on_fit_start(trainer)                  once, after set-up; after a resume, the hooks'
                                           states are loaded first
    on_epoch_start(trainer)                before the first step of an epoch (a resumed one too)
    before_step(trainer)                   before the forward and backward passes of a step
    after_backward(trainer)                gradients are in place; before clipping and the
                                           optimiser step
    after_step(trainer, record)            after the optimiser step; ``record`` holds the
                                           step's numbers, and a hook may add fields to it
                                           for the hooks after it (and for metrics.jsonl)
    on_validation(trainer, result) -> bool after each validation (an ``EvalResult``); True
                                           asks the run to stop early
    on_epoch_end(trainer)                  after an epoch's last step, before the epoch
                                           counter moves on; a run resumed from a checkpoint
                                           taken there calls it again, so it must do nothing
                                           twice (check your own state)
    on_train_end(trainer)                  once after the last step, unless interrupted (Ctrl-C):
                                           the last records, the validation of the last step
    on_fit_end(trainer)                    once when the loop ends, interrupted or not
                                           (``trainer.interrupted``): the final checkpoint

    state_dict() -> dict                   what the hook must carry across a crash: numbers,
    load_state_dict(state)                 strings, lists, dicts and tensors (a network's and
                                           an optimiser's ``state_dict()`` fit as they are).
                                           Saved in every checkpoint under ``name``, in the
                                           same atomic unit as the model. Under DDP it is
                                           called on every rank, rank 0's is saved.

``trainer`` gives hooks what they need: ``recipe``, ``cfg`` (the ``[train]`` section),
``run_dir``, ``device``, ``ctx`` (ranks), ``modality``, ``vae``, ``objective``, ``model`` (the
objective, DDP-wrapped when distributed), ``optimizer``, ``train_set``, ``autocast()``, ``state`` (step, epoch, batch_in_epoch),
``log`` (metrics.jsonl), ``echo``, ``forward(batch, beta)``, ``validate_now()``,
``stop_early(reason)``, ``request_stop()`` and ``hook(name)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from vaezoo.core.estimators import EvalResult
    from vaezoo.train.trainer import Trainer

EVENTS = ("on_setup", "on_fit_start", "on_epoch_start", "before_step", "after_backward", "after_step", "on_validation",
          "on_epoch_end", "on_train_end", "on_fit_end")


class Hook:
    #: the key of this hook's state in a checkpoint; unique among a trainer's hooks
    name: str = ""

    def on_setup(self, trainer: "Trainer") -> None:
        pass

    def on_fit_start(self, trainer: "Trainer") -> None:
        pass

    def on_epoch_start(self, trainer: "Trainer") -> None:
        pass

    def before_step(self, trainer: "Trainer") -> None:
        pass

    def after_backward(self, trainer: "Trainer") -> None:
        pass

    def after_step(self, trainer: "Trainer", record: dict) -> None:
        pass

    def on_validation(self, trainer: "Trainer", result: "EvalResult") -> bool:
        return False

    def on_epoch_end(self, trainer: "Trainer") -> None:
        pass

    def on_train_end(self, trainer: "Trainer") -> None:
        pass

    def on_fit_end(self, trainer: "Trainer") -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def overrides(hook: Hook, event: str) -> bool:
    """Whether ``hook`` implements ``event`` (the loop skips the base class's no-ops)."""
    return getattr(type(hook), event) is not getattr(Hook, event)


class StepCallback(Hook):
    """``Trainer(on_step=fn)``: ``fn(trainer, record)`` after every optimiser step."""

    name = "on_step"

    def __init__(self, fn: Callable[["Trainer", dict], None]):
        self.fn = fn

    def after_step(self, trainer: "Trainer", record: dict) -> None:
        self.fn(trainer, record)
