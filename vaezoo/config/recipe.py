"""Recipes: one TOML file describes a whole run, validated into typed config.

    modality = "image"          # entry-point name, or "package.module:Class"
    name = "fashion-mnist-quick"
    seed = 0
    [latent]    dim of z                        (core)
    [objective] ELBO / IWAE, beta, KL schedule, free bits (core)
    [train]     optimiser, schedule, epochs ...   (core)
    [eval]      importance samples, split ...     (core)
    [data], [model], ...                          (the modality's own sections)

``--set section.key=value`` overrides any key; the value is read as a TOML value, and a
bare word that is not valid TOML is taken as a string. ``--set section.key=`` (nothing after
the ``=``) unsets the key, so its default applies: for an optional key such as a labels
file, that is "none". Relative paths in a recipe file are
relative to that file; relative paths given with ``--set`` are relative to the shell.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import tomli_w

from vaezoo.config.options import did_you_mean, option, parse_section, to_table
from vaezoo.core.errors import RecipeError


@dataclass
class LatentConfig:
    dim: int = option(16, min=1, help="size of the latent vector z")


@dataclass
class ObjectiveConfig:
    kind: Literal["elbo", "iwae", "beta-tcvae"] = option(
        "elbo", help="training objective: the (beta-)ELBO; the k-sample IWAE bound; the beta-TCVAE (Chen et al. "
        "2018), the KL split into index-code MI, total correlation (weighted by beta) and dimension-wise KL")
    beta: float = option(1.0, min=0.0, help="weight of the KL term (its maximum under a schedule); for beta-tcvae, "
                         "of the total correlation")
    tc_alpha: float = option(1.0, min=0.0, help="beta-tcvae: weight of the index-code mutual information")
    tc_gamma: float = option(1.0, min=0.0, help="beta-tcvae: weight of the dimension-wise KL")
    iwae_samples: int = option(5, min=1, help="importance samples k for kind = 'iwae'")
    free_bits: float = option(0.0, min=0.0, help="KL floor per latent dimension in nats (0 = off)")
    kl_schedule: Literal["constant", "linear", "cyclical", "logistic"] = option("constant", help="how beta moves with the step")
    kl_start: float = option(0.0, min=0.0, max=1.0, help="fraction of beta at the start of a linear or cyclical ramp")
    kl_warmup_steps: int = option(0, min=0, help="linear: steps to reach beta")
    kl_period: int = option(1000, min=1, help="cyclical: steps per cycle")
    kl_ratio: float = option(0.5, gt=0.0, max=1.0, help="cyclical: fraction of each cycle spent rising")
    kl_midpoint: int = option(2500, min=0, help="logistic: step at which beta is half its maximum")
    kl_steepness: float = option(0.0025, gt=0.0, help="logistic: slope of the curve")

    def check(self) -> None:
        if self.kind != "elbo" and self.free_bits > 0:
            raise ValueError(f"free_bits works with kind = 'elbo' only, not {self.kind!r}; set free_bits = 0 or kind = 'elbo'")


@dataclass
class PriorConfig:
    kind: Literal["standard", "mog", "vamp"] = option(
        "standard", help="p(z): 'standard' N(0, I); 'mog' a learned mixture of Gaussians; 'vamp' the VampPrior "
        "(Tomczak & Welling 2018), the aggregate posterior of learned pseudo-inputs (needs a modality with "
        "continuous inputs that defines them)")
    components: int = option(10, min=1, help="mog: mixture components; vamp: pseudo-inputs")
    init_scale: float = option(1.0, gt=0.0, help="mog: spread of the components' initial means")


@dataclass
class PosteriorConfig:
    kind: Literal["diagonal", "iaf"] = option(
        "diagonal", help="q(z|x): 'diagonal' the encoder's Gaussian; 'iaf' an inverse autoregressive flow on top "
        "of it (Kingma et al. 2016)")
    flow_steps: int = option(2, min=1, help="iaf: autoregressive transforms (MADEs), the order reversed between them")
    flow_hidden: int = option(64, min=1, help="iaf: hidden units of each MADE")
    context_size: int = option(0, min=0, help="iaf: size of the context vector h the encoder returns as a third "
                               "output (0 = the flow's context is the encoder's mean and log-variance)")


@dataclass
class AdversarialConfig:
    enabled: bool = option(False, help="add an adversarial stage (VAE-GAN, Larsen et al. 2016): a discriminator "
                           "trained beside the VAE, the decoder trained to fool it; modalities with continuous, "
                           "image-like inputs (image, audio) or a plugin discriminator")
    start_step: int = option(0, min=0, help="optimiser steps of the plain VAE before the adversarial phase begins")
    after_kl_warmup: bool = option(False, help="begin no earlier than the end of the KL warm-up "
                                   "(objective.kl_warmup_steps of a linear schedule)")
    discriminator: Literal["patch", "multiscale"] = option(
        "patch", help="the generic discriminator (when the plugin brings none): 'patch' a PatchGAN conv stack; "
        "'multiscale' one per scale, the last axis (time of a spectrogram) halved between scales")
    channels: int = option(32, min=1, help="discriminator width: channels of its first layer, doubled per layer up to 8x")
    layers: int = option(3, min=1, help="stride-2 layers per discriminator (fewer when the input is small)")
    scales: int = option(3, min=1, help="multiscale: discriminators, each on a 2x coarser last axis")
    spectral_norm: bool = option(True, help="spectral norm on every discriminator convolution (Miyato et al. 2018)")
    loss: Literal["hinge", "non-saturating", "least-squares"] = option("hinge", help="the GAN loss")
    adversarial_weight: float = option(0.01, min=0.0, help="weight of the generator's adversarial loss, per "
                                       "element of x (the likelihood term is a sum over the elements)")
    feature_matching_weight: float = option(0.1, min=0.0, help="weight of feature matching in the "
                                            "discriminator's layers (Larsen et al.'s learned similarity), per element of x")
    feature_distance: Literal["l1", "l2"] = option("l1", help="feature matching's distance")
    likelihood_weight: float = option(1.0, min=0.0, max=1.0, help="weight of log p(x|z) in the generator's loss "
                                      "during the phase (1 = all of it; 0 = replaced by feature matching, as Larsen "
                                      "et al.); the logged ELBO is always the whole bound")
    prior_samples: bool = option(True, help="the discriminator also sees decoded prior samples as fakes, and the "
                                 "decoder learns to make them pass (Larsen et al.); false = reconstructions only (RAVE)")
    freeze_encoder: bool = option(False, help="train only the decoder (and the prior) in the phase (RAVE's second phase)")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = option("adam", help="the discriminator's optimiser")
    lr: float = option(2e-4, gt=0.0, help="the discriminator's learning rate")
    betas: list[float] = option([0.5, 0.9], min=0.0, max=1.0, help="the discriminator's Adam/AdamW betas")
    grad_clip: float = option(0.0, min=0.0, help="clip the discriminator's gradient norm to this (0 = off)")

    def check(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"betas: expected two numbers, got {self.betas}")


@dataclass
class ConditionConfig:
    enabled: bool = option(False, help="a class-conditional VAE (Sohn et al. 2015): the decoder models p(x|z, c), "
                           "the encoder optionally q(z|x, c); the core embeds the class c and hands the decoder z "
                           "with the embedding appended")
    key: str = option("label", help="the batch key holding each example's class (integers 0 .. classes-1)")
    classes: int = option(0, min=0, help="how many classes (0 = the number of the data's class names, resolved "
                          "when training starts and written into the run's recipe)")
    names: list[str] = option([], help="the class names, index i -> name (empty = the data's names, or the ids "
                              "0 .. classes-1 when it has none); `vaezoo sample --condition NAME` takes them")
    embedding_dim: int = option(16, min=1, help="size of the learned class embedding; larger makes samples follow "
                                "their class more closely and costs likelihood (Fashion-MNIST quick: 16, 32, 64 -> "
                                "84.7%, 87.7%, 89.7% of samples recognised as asked, IW-NLL +0.5 and +1.3 nats; "
                                "benchmarks/results/conditional-embedding.jsonl)")
    encoder: bool = option(True, help="the encoder sees the class too, q(z|x, c), so z is free to hold what the "
                           "class does not; false = q(z|x), only the decoder is conditional")

    def check(self) -> None:
        if not self.key:
            raise ValueError("key: expected the name of a batch key, got an empty string")
        if self.classes and self.names and len(self.names) != self.classes:
            raise ValueError(f"names: {len(self.names)} names for classes = {self.classes}; give one per class")
        if len(set(self.names)) != len(self.names):
            repeated = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"names: each name must be distinct, {repeated} repeat")


@dataclass
class TrainConfig:
    epochs: int = option(10, min=1, help="passes over the training split")
    max_steps: int = option(0, min=0, help="stop after this many optimiser steps (0 = no cap)")
    batch_size: int = option(64, min=1, help="examples per micro-batch (per process under DDP)")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = option("adam", help="optimiser (a change on resume starts its state fresh)")
    fused_optimizer: bool = option(True, help="use torch's fused kernel for adam, adamw and sgd on CPU and CUDA")
    lr: float = option(1e-3, gt=0.0, help="peak learning rate")
    weight_decay: float = option(0.0, min=0.0, help="weight decay (L2 for adam, sgd and rmsprop; decoupled for adamw)")
    betas: list[float] = option([0.9, 0.999], min=0.0, max=1.0, help="Adam/AdamW betas")
    momentum: float = option(0.9, min=0.0, max=1.0, help="SGD/RMSprop momentum")
    lr_schedule: Literal["constant", "cosine", "linear"] = option("constant", help="decay after warmup")
    warmup_steps: int = option(0, min=0, help="linear learning-rate warmup")
    min_lr_factor: float = option(0.0, min=0.0, max=1.0, help="final lr as a fraction of the peak")
    grad_clip: float = option(0.0, min=0.0, help="clip the global gradient norm to this (0 = off)")
    grad_accum: int = option(1, min=1, help="micro-batches per optimiser step")
    bf16: bool = option(False, help="run forward passes under bfloat16 autocast")
    compile: bool = option(False, help="torch.compile the objective (encoder, decoder and loss in one graph where "
                          "it can be traced): 1.3-1.7x the steps per second on a CPU in benchmarks/throughput.py, "
                          "after about 30 s of compiling; numbers differ from eager in the last bits")
    channels_last: bool = option(False, help="conv models: weights and 4-D float batches in channels-last "
                                "memory format: 1.2-2x the image quick recipe's steps per second on a CPU "
                                "(benchmarks/throughput.py --channels-last); no effect without 4-D tensors")
    pin_memory: bool = option(False, help="CUDA only: training batches in page-locked host memory (pinned by the "
                             "loader's thread with num_workers, in the trainer's process without), so copies to "
                             "the GPU do not block the host; ignored with a notice on other devices. Measure it "
                             "with benchmarks/throughput.py on the GPU (--host-copy)")
    device: str = option("auto", help="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    threads: int = option(0, min=0, help="torch CPU threads (0 = torch's default)")
    num_workers: int = option(0, min=0, help="DataLoader worker processes")
    eval_every: int = option(0, min=0, help="validate every N steps (0 = at the end of each epoch)")
    val_max_examples: int = option(0, min=0, help="validate on at most this many examples (0 = all)")
    checkpoint_every: int = option(0, min=0, help="extra checkpoint every N steps (0 = at each validation)")
    early_stopping_patience: int = option(0, min=0, help="stop after N validations without improvement (0 = off)")
    early_stopping_min_delta: float = option(0.0, min=0.0, help="smallest loss decrease that counts as improvement")
    log_every: int = option(50, min=1, help="steps between training-metric records")
    aggressive_encoder: bool = option(
        False, help="He et al. (2019): before each decoder step, train the encoder alone until its loss "
        "stops falling; switched off for good once validation mutual information stops rising")
    aggressive_max_inner: int = option(100, min=1, help="most encoder-only steps before each decoder step")
    samples: int = option(64, min=0, help="prior samples written to samples/ at the end (0 = none)")
    tensorboard: bool = option(True, help="also write TensorBoard event files")

    def check(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"betas: expected two numbers, got {self.betas}")
        device = self.device
        if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")


@dataclass
class EvalConfig:
    split: Literal["test", "validation", "train"] = option("test", help="split evaluated at the end and by `vaezoo eval`")
    iw_samples: int = option(100, min=0, help="importance samples k for the IW-NLL (0 = skip it)")
    batch_size: int = option(100, min=1, help="examples per evaluation batch")
    chunk_size: int = option(100, min=1, help="importance samples decoded at once (memory bound)")
    max_examples: int = option(0, min=0, help="evaluate at most this many examples (0 = all)")
    at_end: bool = option(True, help="evaluate when training finishes and write eval.json")


CORE_SECTIONS: dict[str, type] = {
    "latent": LatentConfig,
    "prior": PriorConfig,
    "posterior": PosteriorConfig,
    "objective": ObjectiveConfig,
    "adversarial": AdversarialConfig,
    "condition": ConditionConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
TOP_LEVEL = ("modality", "name", "seed")


@dataclass
class Recipe:
    modality: str
    name: str
    seed: int
    latent: LatentConfig
    prior: PriorConfig
    posterior: PosteriorConfig
    objective: ObjectiveConfig
    adversarial: AdversarialConfig
    condition: ConditionConfig
    train: TrainConfig
    eval: EvalConfig
    sections: dict[str, Any] = field(default_factory=dict)   # the modality's own sections
    source: str = "<recipe>"

    def __getattr__(self, item: str) -> Any:
        # The modality's sections read like the core's: recipe.data, recipe.model ...
        sections = self.__dict__.get("sections", {})
        if item in sections:
            return sections[item]
        raise AttributeError(item)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"modality": self.modality, "name": self.name, "seed": self.seed}
        for key in CORE_SECTIONS:
            out[key] = to_table(getattr(self, key))
        for key, value in self.sections.items():
            out[key] = to_table(value)
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


def parse_value(text: str) -> Any:
    """A --set value: a TOML value if it parses as one, else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: Sequence[str]) -> tuple[dict, set[str]]:
    """Apply ``section.key=value`` strings to a raw recipe table; returns the table and the dotted keys set."""
    keys = set()
    for expr in overrides:
        dotted, sep, text = expr.partition("=")
        dotted = dotted.strip()
        if not sep or not dotted or any(not part for part in dotted.split(".")):
            raise RecipeError("--set", expr, "expected section.key=value, e.g. --set train.lr=3e-4")
        table = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = table.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError("--set", dotted, f"{part!r} is a value, not a table")
            table = node
        if not text.strip():
            table.pop(leaf, None)    # "key=" unsets the key: its default applies (None for an optional path)
            continue
        table[leaf] = parse_value(text.strip())
        keys.add(dotted)
    return raw, keys


def parse_recipe(
    raw: dict, *, plugin_sections: dict[str, type] | None, source: str, base_dir: Path,
    cli_keys: Iterable[str] = frozenset(), check_paths: bool = True, problems: Sequence[RecipeError] = (),
) -> Recipe:
    """Validate a raw recipe table (after overrides) into a ``Recipe``, the modality's own
    sections given by the caller (``vaezoo.plugin.recipes.build_recipe`` asks the registry).

    Every problem of every section is collected and raised as one ``RecipeError`` listing
    them, one per line; ``problems`` are ones the caller found already. ``plugin_sections=None``
    means the modality could not be loaded (the caller reports why in ``problems``): the core
    keys are still checked, the others are left alone.
    """
    problems = list(problems)
    modality = ""
    if plugin_sections is None and not problems:
        problems.append(RecipeError(source, "modality", "the modality's sections are unknown"))
    if plugin_sections is not None:
        try:
            modality = recipe_modality(raw, source)
        except RecipeError as err:
            problems.append(err)
        allowed = list(TOP_LEVEL) + list(CORE_SECTIONS) + list(plugin_sections)
        for key in raw:
            if key not in allowed:
                problems.append(RecipeError(source, key, f"unknown key{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}"))
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        problems.append(RecipeError(source, "name", f"expected a non-empty string, got {name!r}"))
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.append(RecipeError(source, "seed", f"expected an integer >= 0, got {seed!r}"))

    parsed: dict[str, Any] = {}
    for key, cls in {**CORE_SECTIONS, **(plugin_sections or {})}.items():
        try:
            parsed[key] = parse_section(cls, raw.get(key, {}), source=source, section=key, base_dir=base_dir,
                                        cli_keys=cli_keys, check_paths=check_paths)
        except RecipeError as err:
            problems.append(err)
    if not problems:
        problems += combination_problems(parsed, source)
    if problems:
        raise RecipeError.combine(problems)
    core = {key: parsed[key] for key in CORE_SECTIONS}
    own = {key: parsed[key] for key in plugin_sections or {}}
    return Recipe(modality=modality, name=name, seed=seed, sections=own, source=source, **core)


def combination_problems(sections: dict[str, Any], source: str) -> list[RecipeError]:
    """Choices that each parse but do not go together (prior, posterior, objective)."""
    prior, posterior, objective = sections["prior"], sections["posterior"], sections["objective"]
    adversarial, condition = sections["adversarial"], sections["condition"]
    problems = []
    if objective.free_bits > 0 and (prior.kind != "standard" or posterior.kind != "diagonal"):
        problems.append(RecipeError(
            source, "[objective] free_bits",
            f"free bits need the closed-form KL of each latent dimension, which prior.kind = {prior.kind!r} with "
            f"posterior.kind = {posterior.kind!r} does not have; set free_bits = 0, or use the standard prior and "
            "the diagonal posterior"))
    if objective.kind == "beta-tcvae" and posterior.kind != "diagonal":
        problems.append(RecipeError(
            source, "[objective] kind",
            f"'beta-tcvae' needs posterior.kind = 'diagonal': it evaluates every example's q(z|x) at every other "
            f"example's sample, which a {posterior.kind!r} posterior cannot; use kind = 'elbo' or 'iwae' with it"))
    if adversarial.enabled and adversarial.likelihood_weight != 1.0 and objective.kind == "iwae":
        problems.append(RecipeError(
            source, "[adversarial] likelihood_weight",
            f"{adversarial.likelihood_weight} needs an objective whose loss holds the likelihood as a term of its "
            "own (elbo, beta-tcvae); the IWAE bound does not: set likelihood_weight = 1 or objective.kind = 'elbo'"))
    if adversarial.enabled and adversarial.after_kl_warmup and objective.kl_schedule not in ("constant", "linear"):
        problems.append(RecipeError(
            source, "[adversarial] after_kl_warmup",
            f"a {objective.kl_schedule!r} KL schedule has no end of warm-up; use start_step, or kl_schedule = 'linear'"))
    if condition.enabled and condition.encoder and prior.kind == "vamp":
        problems.append(RecipeError(
            source, "[condition] encoder",
            "true cannot go with prior.kind = 'vamp': the VampPrior encodes its pseudo-inputs, which carry no "
            "class; set encoder = false (only the decoder sees the class) or use prior.kind = 'mog'"))
    return problems


#: what the top-level keys of a recipe mean (for ``vaezoo options`` and docs/recipes.md)
TOP_LEVEL_HELP = {
    "modality": "the modality plugin: an installed entry-point name (`vaezoo plugins`) or \"package.module:Class\"",
    "name": "the run's name, used for the default run directory (default: the recipe file's name)",
    "seed": "seeds every random draw of the run: the same recipe trains the same model",
}


def recipe_modality(raw: dict, source: str) -> str:
    """The ``modality = "..."`` of a raw recipe, checked to be a string."""
    modality = raw.get("modality")
    if modality is None:
        raise RecipeError(source, "modality", "is required: the name of an installed modality plugin (see `vaezoo plugins`)")
    if not isinstance(modality, str):
        raise RecipeError(source, "modality", f"expected a string, got {modality!r}")
    return modality


def read_toml(path: Path, source: str | None = None) -> dict:
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(source, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(source, None, f"cannot read: {err}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(source, None, f"not valid TOML: {err}") from None
