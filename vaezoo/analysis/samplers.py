"""Ex-post density estimation in the latent space: a Gaussian mixture fitted after training.

A VAE's aggregate posterior q(z) = E_x q(z|x) rarely fills the prior N(0, I): samples drawn
from regions of the prior the encoder never uses decode to blurry or off-manifold outputs.
Ghosh et al. (2020, "From variational to deterministic autoencoders") fit a Gaussian mixture
to the latent codes of the training set after training and sample from it instead; the
decoder then sees latents like those it was trained on.

``gmm_for_run`` fits scikit-learn's ``GaussianMixture`` (``DEFAULT_COMPONENTS`` components,
full covariances by default, seeded by the recipe's seed) to the **posterior means** of the
training split, as Ghosh et al. do (for an IAF posterior, the flow of each base mean: the
point the decoder reads). (pythae's ``GaussianMixtureSampler`` fits one reparameterised draw
per example instead, which widens every component by the posterior's own noise.) At most ``DEFAULT_MAX_EXAMPLES`` (20,000) examples are encoded: the whole split
when it is smaller, else a seeded random subset of it (a split stored in some order, say by
class, would bias its first examples).

The mixture is saved in the run as ``samplers/gmm.safetensors`` (no pickle): tensors
``weights`` [K], ``means`` [K, D], ``covariances`` [K, D, D] and their Cholesky factors
``scale_tril`` [K, D, D], all float64 and full whatever the covariance type; metadata: the
number of components, the covariance type, the examples used and the cap, the fit's seed,
the weights file it was fitted on (relative to the run), that file's step and SHA-256, and the
vaezoo version. It is reused until it no longer fits the request: other weights (file, step
or content), another number of components, covariance type or cap, or ``refit=True``.

``GaussianMixture.sample`` draws with torch alone and a given ``torch.Generator`` (a component
from the weights, then ``mean + temperature * L @ eps``), so one seed gives the same latents
on every device.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from vaezoo.analysis.latents import Latents, encode_batches, encode_split
from vaezoo.core.data import dataset_length, make_loader
from vaezoo.core.errors import InputError
from vaezoo.core.files import atomic_path
from vaezoo.core.version import __version__

if TYPE_CHECKING:
    from vaezoo.train.runs import Run

FILE = Path("samplers") / "gmm.safetensors"   # inside the run directory
FORMAT = "vaezoo-gmm"
SPLIT = "train"
DEFAULT_COMPONENTS = 10
DEFAULT_MAX_EXAMPLES = 20_000
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
MAX_ITER = 500
TENSORS = ("weights", "means", "covariances", "scale_tril")


@dataclass
class GaussianMixture:
    """A mixture of K full-covariance Gaussians over D latent dimensions (float64 tensors).

    ``weights`` [K] (summing to 1), ``means`` [K, D], ``covariances`` [K, D, D] and
    ``scale_tril`` [K, D, D], the lower Cholesky factor of each covariance. ``metadata``:
    string provenance, as saved (see the module docstring).
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor
    scale_tril: torch.Tensor
    covariance_type: str = "full"
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def components(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` latents [n, D] (float64, CPU): a component drawn by weight, then
        ``mean + temperature * L @ eps`` with eps ~ N(0, I). ``temperature`` scales each
        component's spread around its mean (1 = the fitted mixture; the means stay put)."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        spread = (self.scale_tril[component] @ eps.unsqueeze(-1)).squeeze(-1)
        return self.means[component] + temperature * spread

    def mean(self) -> torch.Tensor:
        """The mixture's mean [D]: sum_k w_k mu_k."""
        return self.weights @ self.means

    def covariance(self, temperature: float = 1.0) -> torch.Tensor:
        """The mixture's covariance [D, D] (of ``sample`` at ``temperature``):
        sum_k w_k (t^2 Sigma_k + mu_k mu_k^T) - mu mu^T."""
        second = temperature**2 * self.covariances + self.means.unsqueeze(-1) * self.means.unsqueeze(-2)
        mean = self.mean()
        return (self.weights.view(-1, 1, 1) * second).sum(0) - torch.outer(mean, mean)


def _full_covariances(covariances, covariance_type: str, k: int, d: int) -> torch.Tensor:
    """scikit-learn's covariances_ of any covariance type as [K, D, D]."""
    c = torch.as_tensor(covariances, dtype=torch.float64)
    if covariance_type == "full":
        return c.clone()
    if covariance_type == "tied":
        return c.expand(k, d, d).clone()
    if covariance_type == "diag":
        return torch.diag_embed(c)
    return c.view(k, 1, 1) * torch.eye(d, dtype=torch.float64)   # spherical


def fit_gmm(points: torch.Tensor, components: int = DEFAULT_COMPONENTS, *, covariance_type: str = "full",
            seed: int = 0, max_iter: int = MAX_ITER) -> GaussianMixture:
    """Fit a K-component mixture to ``points`` [N, D] by EM (scikit-learn, k-means start,
    ``random_state=seed``). ``metadata`` gets ``converged``, ``iterations`` and
    ``log_likelihood`` (the mean per point). Raises InputError when K exceeds N or the fit fails."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    if covariance_type not in COVARIANCE_TYPES:
        raise InputError(f"covariance type {covariance_type!r}: use one of {', '.join(COVARIANCE_TYPES)}")
    if points.ndim != 2 or len(points) == 0:
        raise InputError("no points to fit a Gaussian mixture to")
    n, d = points.shape
    if components < 1 or components > n:
        raise InputError(f"{components} mixture components for {n} examples: use at most {n} components")
    if not torch.isfinite(points).all():
        raise InputError("the posterior means hold NaN or infinite values; the model cannot be fitted")
    x = points.detach().double().cpu().numpy()
    model = SkGaussianMixture(n_components=components, covariance_type=covariance_type, max_iter=max_iter,
                              random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # reported through metadata["converged"]
        try:
            model.fit(x)
        except ValueError as err:   # e.g. "ill-defined empirical covariance" on degenerate points
            raise InputError(f"the Gaussian mixture could not be fitted: {str(err).splitlines()[0]}") from None
    weights = torch.as_tensor(model.weights_, dtype=torch.float64)
    covariances = _full_covariances(model.covariances_, covariance_type, components, d)
    scale_tril, info = torch.linalg.cholesky_ex(covariances)
    if info.any():
        raise InputError("the fitted mixture has a covariance that is not positive definite; try fewer components")
    return GaussianMixture(
        weights=weights / weights.sum(),
        means=torch.as_tensor(model.means_, dtype=torch.float64).clone(),
        covariances=covariances,
        scale_tril=scale_tril,
        covariance_type=covariance_type,
        metadata={
            "converged": str(bool(model.converged_)).lower(),
            "iterations": str(int(model.n_iter_)),
            "log_likelihood": repr(float(model.score(x))),
        },
    )


# -- the file ---------------------------------------------------------------------------------


def save_gmm(mixture: GaussianMixture, path: Path) -> Path:
    """Write ``mixture`` to ``path`` (safetensors) atomically: the old file or the new, never a mix."""
    from safetensors.torch import save_file

    tensors = {name: getattr(mixture, name).to(torch.float64).contiguous() for name in TENSORS}
    metadata = {**mixture.metadata, "format": FORMAT, "components": str(mixture.components),
                "covariance_type": mixture.covariance_type, "latent_dim": str(mixture.dim)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_gmm(path: Path) -> GaussianMixture:
    """Read a mixture written by ``save_gmm`` (no pickle), checking that it is whole and valid:
    the four tensors with matching shapes, finite, weights summing to 1, lower-triangular
    factors with a positive diagonal that reproduce the covariances. Raises InputError naming
    the file and the first problem otherwise."""
    from safetensors import SafetensorError, safe_open

    def bad(problem: str) -> InputError:
        return InputError(f"{path}: not a usable Gaussian mixture ({problem}); run with --refit to fit it again")

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            names = set(f.keys())
            missing = [name for name in TENSORS if name not in names]
            if missing:
                raise bad(f"no tensor {missing[0]!r}")
            tensors = {name: f.get_tensor(name) for name in TENSORS}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise bad(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    if metadata.get("format") != FORMAT:
        raise bad(f"format {metadata.get('format')!r}, expected {FORMAT!r}")
    if not all(t.is_floating_point() for t in tensors.values()):
        raise bad("tensors are not floating point")
    w, mu, cov, tril = (tensors[name].to(torch.float64) for name in TENSORS)
    k = w.shape[0] if w.ndim == 1 else 0
    d = mu.shape[1] if mu.ndim == 2 else 0
    if k < 1 or d < 1 or mu.shape != (k, d) or cov.shape != (k, d, d) or tril.shape != (k, d, d):
        raise bad(f"shapes {[list(t.shape) for t in (w, mu, cov, tril)]} do not fit one mixture")
    if metadata.get("components") != str(k) or metadata.get("latent_dim") != str(d):
        raise bad("its metadata does not match its tensors")
    if not all(torch.isfinite(t).all() for t in (w, mu, cov, tril)):
        raise bad("NaN or infinite values")
    if (w < 0).any() or abs(float(w.sum()) - 1) > 1e-6:
        raise bad("the weights are not a distribution")
    if not torch.equal(tril, tril.tril()) or (tril.diagonal(dim1=-2, dim2=-1) <= 0).any():
        raise bad("scale_tril is not a Cholesky factor")
    if not torch.allclose(tril @ tril.mT, cov, rtol=1e-6, atol=1e-9):
        raise bad("scale_tril does not match the covariances")
    covariance_type = metadata.get("covariance_type", "")
    if covariance_type not in COVARIANCE_TYPES:
        raise bad(f"covariance type {covariance_type!r}")
    return GaussianMixture(w, mu, cov, tril, covariance_type, metadata)


# -- a run's mixture --------------------------------------------------------------------------


def weights_identity(run: Run) -> dict[str, str]:
    """Which weights a run was opened with: file (relative to the run), step and SHA-256."""
    path = run.weights_path
    if path is None:
        return {"weights_file": "", "weights_step": "", "weights_sha256": ""}
    try:
        name = path.relative_to(run.path).as_posix()
    except ValueError:
        name = path.as_posix()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    step = run.weights_step
    return {"weights_file": name, "weights_step": "" if step is None else str(step), "weights_sha256": digest.hexdigest()}


def _why_stale(saved: dict[str, str], wanted: dict[str, str]) -> str | None:
    """Why a saved mixture does not serve this request, in a few words, or None."""
    def weights(meta: dict[str, str]) -> str:
        step = meta.get("weights_step") or "?"
        return f"{meta.get('weights_file') or '?'} (step {step})"

    if (saved.get("weights_file"), saved.get("weights_step")) != (wanted["weights_file"], wanted["weights_step"]):
        return f"it was fitted on {weights(saved)}, these weights are {weights(wanted)}"
    if saved.get("weights_sha256") != wanted["weights_sha256"]:
        return f"{wanted['weights_file']} has changed since it was fitted"
    if saved.get("components") != wanted["components"]:
        return f"it has {saved.get('components')} components, {wanted['components']} asked for"
    if saved.get("covariance_type") != wanted["covariance_type"]:
        return f"it has {saved.get('covariance_type')} covariances, {wanted['covariance_type']} asked for"
    if not _same_examples(saved, int(wanted["max_examples"])):
        return f"it was fitted on {saved.get('examples')} examples (cap {saved.get('max_examples')}), " \
               f"the cap asked for is {wanted['max_examples']}"
    return None


def _same_examples(saved: dict[str, str], cap: int) -> bool:
    """Whether a cap of ``cap`` examples (0 = all) picks the examples the saved fit used."""
    try:
        used, saved_cap = int(saved.get("examples", "")), int(saved.get("max_examples", ""))
    except ValueError:
        return False
    if saved_cap == 0 or used < saved_cap:          # the whole split was used
        return cap == 0 or cap >= used
    return cap == saved_cap                         # a subset of exactly that size


def encode_for_fit(run: Run, components: int, max_examples: int | None, seed: int,
                   before: Callable[[], None] = lambda: None) -> Latents:
    """Posterior means (and log-variances) of the training split, at most ``max_examples`` of
    them (a seeded random subset when the split is larger). Checks before encoding that the
    split is not empty and holds at least ``components`` examples; calls ``before`` then."""
    from torch.utils.data import Subset

    dataset = run.modality.dataset(SPLIT)
    n = dataset_length(dataset)
    if n == 0:
        raise InputError(f"the {SPLIT} split of {run.path} is empty: there is nothing to fit a mixture to")
    used = min(n, max_examples or n)
    if components > used:
        raise InputError(f"--components {components} is more than the {used} {SPLIT} examples to fit; "
                         f"use at most {used}")
    before()
    if used == n:
        return encode_split(run, SPLIT)
    g = torch.Generator().manual_seed(seed)
    indices = sorted(torch.randperm(n, generator=g)[:used].tolist())
    loader = make_loader(Subset(dataset, indices), run.modality.collate, run.recipe.eval.batch_size)
    return encode_batches(run.vae, loader, run.device, total=len(loader))


def gmm_for_run(run: Run, *, components: int = DEFAULT_COMPONENTS, covariance_type: str = "full",
                max_examples: int | None = DEFAULT_MAX_EXAMPLES, refit: bool = False,
                echo: Callable[[str], None] = lambda message: None) -> tuple[GaussianMixture, bool]:
    """The run's mixture, from ``samplers/gmm.safetensors`` or fitted now; returns it and
    whether it was fitted (and saved). A saved one is reused unless ``refit`` or it no longer
    fits the request (other weights, components, covariance type or cap; ``echo`` gets one
    line saying why it refits). A file that cannot be read raises InputError unless ``refit``,
    and nothing is written before a fit succeeds."""
    path = run.path / FILE
    wanted = {**weights_identity(run), "components": str(components), "covariance_type": covariance_type,
              "max_examples": str(max_examples or 0)}
    what = f"({components} components, {covariance_type} covariances)"
    if refit:
        note = f"refitting the Gaussian mixture {what}, as asked"
    elif path.exists() or path.is_symlink():
        saved = load_gmm(path)
        why = _why_stale(saved.metadata, wanted)
        if why is None:
            return saved, False
        note = f"refitting the Gaussian mixture in {path}: {why}"
    else:
        note = f"fitting a Gaussian mixture {what} to the posterior means of the {SPLIT} split"
    seed = run.recipe.seed
    latents = encode_for_fit(run, components, max_examples, seed, before=lambda: echo(note))
    mixture = fit_gmm(latents.points, components, covariance_type=covariance_type, seed=seed)
    if mixture.metadata["converged"] != "true":
        echo(f"note: EM stopped after {mixture.metadata['iterations']} iterations without converging; "
             "the mixture is used as it is")
    mixture.metadata.update(wanted)
    mixture.metadata.update({"split": SPLIT, "examples": str(len(latents)), "fit_seed": str(seed),
                             "fitted_on": "posterior means", "vaezoo_version": __version__})
    if mixture.dim != run.vae.latent_dim:
        raise InputError(f"the encoder gave {mixture.dim} latent dimensions, the model has {run.vae.latent_dim}")
    save_gmm(mixture, path)
    return mixture, True
