"""The class-conditional VAE against its unconditional twin, per modality ([condition] section).

Every row trains two models one after the other in this process, from the same recipe, data,
seed and budget: the conditional one (``condition.enabled = true``: p(x|z, c), and q(z|x, c)
by the recipe's default ``condition.encoder``) and the unconditional twin (the recipe as it
is). Both read the same labelled data (the row's data option below); only the unconditional
model ignores the labels.

Rows (recipe, the data option that gives the batches their "label"):

- fmnist: recipes/fashion-mnist-quick.toml (labels come with the data), 10 classes.
- fmnist-long: the same recipe with --fmnist-long-epochs epochs (10): a larger budget, as
  the quick one's 3 epochs came out just short of the 85% target below (84.7%).
- text: recipes/wordnet-quick.toml with data.labels = "source": the WordNet part of speech of
  each example sentence (adj, adv, noun, verb).
- audio: recipes/klettres-quick.toml with data.labels = "folder": the language folder of
  each recording (label_depth 1: 20 classes, very unequal in size, ml the largest with 28%
  of the recordings; two of them have no test recording).

Figures of a row:

1. A classifier that this script trains on the real training split (the VAEs never see it):
   - fmnist: benchmarks/fid_fmnist.py's small CNN (cached in benchmarks/.cache/; its test
     accuracy is the one in its metadata);
   - text: bag-of-words logistic regression (scikit-learn CountVectorizer + LogisticRegression)
     on the training sentences and their part of speech;
   - audio: a small CNN (3 conv blocks, averaged over time, one linear layer) on the
     standardised log-mel clips the modality's datasets give (random 64-frame crops of the
     training recordings, --audio-classifier-epochs epochs, seeded).
   ``classifier.test_accuracy`` is its accuracy on the real test split (every test image;
   every test sentence; every tiled test clip), with its recall per class and the share of
   the largest class (what always guessing it would score).
2. Conditional accuracy: --*-per-class latents z ~ p(z), drawn once and decoded with every
   class (so classes differ only by the condition): images and audio as the decoder's mean
   (a [0, 1] image; a standardised log-mel clip), text by the recipe's [generate] options
   (beam search). ``conditional_accuracy`` is the share of these that the classifier assigns
   to the class asked for, overall (every class equally weighted) and per class; ``chance`` =
   1 / classes. Read it against the classifier's own test accuracy: a perfect conditional
   model scores about what the classifier scores on real data (less where decoded means are
   blurrier than real inputs, which the classifier never saw). For text,
   ``distinct_samples`` is the share of different sentences per class (one sentence for every
   z would mean the decoder ignores z), with a few examples per class.
3. The price or gain in likelihood: test IW-NLL of the conditional model, -log p(x|c), and of
   the twin, -log p(x), with the same k importance samples on the same first test examples
   (`vaezoo eval`'s path: evaluate_split on the best weights), with ELBO, KL, active units and
   training seconds (the sum of metrics.jsonl's "timing" records) of both.
   As p(x|c) = p(x) p(c|x) / p(c), exact models would differ by log p(c) - log p(c|x): the
   conditional one lower by what the class adds to x, at most -log p(c) (log(classes) nats
   for equal classes, ``log_classes``), and by about that much when x shows its class. A
   larger gap means the conditional model is the better model of x itself: its mixture over
   equally likely classes, sum_c p(x|c) / classes >= p(x|c) / classes, scores at most
   ``log_classes`` above -log p(x|c).

    make bench-conditional                                  # every row, about 25 minutes on 2 busy cores
    .venv/bin/python benchmarks/conditional.py --rows fmnist
    .venv/bin/python benchmarks/conditional.py --max-steps 30 --fmnist-per-class 50 --text-per-class 10 \\
        --audio-per-class 5 --fmnist-k 5 --fmnist-test-examples 200 --text-k 5 --text-test-examples 100 \\
        --audio-k 2 --audio-classifier-epochs 1 --work /tmp/conditional-smoke \\
        --out /tmp/conditional-smoke.jsonl                  # a smoke run of about 2 minutes

``--condition KEY=VALUE`` sets a [condition] option of every conditional model (e.g.
``embedding_dim=64``); benchmarks/results/conditional-embedding.jsonl holds such a sweep of the
embedding size (16, the default, is in conditional.jsonl).

Prints one JSON line per row and a summary line, and writes the same lines to
benchmarks/results/conditional.jsonl (--out; rewritten after every row, so an interrupted run
keeps what it finished). Progress goes to stderr. Run directories go under
benchmarks/.runs/conditional/ROW/{conditional,unconditional} (ignored by git; --work),
replaced on every run; `vaezoo sample RUN --condition all` writes samples of every class.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fid_fmnist  # noqa: E402
from fresh_runs import Trained, fresh_run  # noqa: E402
from results_log import ResultsFile, add_run_options, eval_figures, logger, parse_run_args, r4  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
log = logger("conditional")
RESULTS = ROOT / "benchmarks" / "results" / "conditional.jsonl"
# row: (recipe, the data option that gives every batch its "label")
ROWS = {
    "fmnist": ("fashion-mnist-quick", []),
    "fmnist-long": ("fashion-mnist-quick", []),
    "text": ("wordnet-quick", ['data.labels="source"']),
    "audio": ("klettres-quick", ['data.labels="folder"']),
}
FMNIST_TARGET = 0.85      # the target for the conditional accuracy on Fashion-MNIST
TEXT_EXAMPLES = 3         # generated sentences per class shown in the record


def rel(path: Path | str) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# -- training ------------------------------------------------------------------------------------


def common_overrides(args: argparse.Namespace) -> list[str]:
    return [f"seed={args.seed}", f"train.threads={args.threads}", "train.tensorboard=false", "eval.at_end=false",
            'train.device="cpu"']


def row_overrides(row: str, args: argparse.Namespace) -> list[str]:
    """The row's data option and budget (both models get them)."""
    out = list(ROWS[row][1])
    if row == "fmnist" and args.fmnist_epochs:
        out.append(f"train.epochs={args.fmnist_epochs}")
    if row == "fmnist-long":
        out.append(f"train.epochs={args.fmnist_long_epochs}")
    if row == "audio":
        out.append("train.samples=0")   # its end-of-training samples would be 4 clips x ~20 classes of Griffin-Lim
    if args.max_steps:
        out.append(f"train.max_steps={args.max_steps}")
    return out


def train_pair(row: str, args: argparse.Namespace) -> dict[str, dict]:
    """The row's conditional model, then its unconditional twin: model -> {trained, overrides, command}."""
    from vaezoo.plugin.recipes import load_recipe

    recipe = ROOT / "recipes" / f"{ROWS[row][0]}.toml"
    shared = row_overrides(row, args)
    out = {}
    conditional = ["condition.enabled=true"] + [f"condition.{o}" for o in args.condition]
    for model, extra in (("conditional", conditional), ("unconditional", [])):
        run_dir = args.work / row / model
        overrides = common_overrides(args) + shared + extra
        trained = fresh_run(f"{row}/{model}", load_recipe(recipe, overrides), run_dir, log)
        command = " ".join(["vaezoo", "train", rel(recipe), "--run-dir", rel(run_dir)]
                           + [f"--set {shlex.quote(o)}" for o in overrides])
        out[model] = {"trained": trained, "overrides": shared + extra, "command": command}
    return out


def model_figures(info: dict, run, e) -> dict:
    t: Trained = info["trained"]
    return {"overrides": info["overrides"], "run_dir": rel(run.path), "steps": t.result.steps,
            "weights": run.weights, "weights_step": run.weights_step,
            "parameters": sum(p.numel() for p in run.vae.parameters()), **eval_figures(e),
            "train_seconds": round(t.train_seconds, 1), "fit_seconds": round(t.fit_seconds, 1),
            "command": info["command"]}


# -- scores --------------------------------------------------------------------------------------


@torch.no_grad()
def prior_latents(vae, n: int, seed: int) -> torch.Tensor:
    p = next(vae.parameters())
    return vae.prior.sample(n, generator=torch.Generator().manual_seed(seed), device=p.device, dtype=p.dtype)


def recall_per_class(predicted: torch.Tensor, truth: torch.Tensor, names: list[str]) -> dict:
    return {name: r4((predicted[truth == c] == c).float().mean().item()) if (truth == c).any() else None
            for c, name in enumerate(names)}


def classifier_figures(kind: str, predicted: torch.Tensor, truth: torch.Tensor, names: list[str], **extra) -> dict:
    counts = torch.bincount(truth, minlength=len(names))
    return {"kind": kind, "test_examples": len(truth), "test_accuracy": r4((predicted == truth).float().mean().item()),
            "test_recall_per_class": recall_per_class(predicted, truth, names),
            "largest_class_share": r4(counts.max().item() / len(truth)), **extra}


def conditional_accuracy(vae, per_class: int, seed: int, classify) -> dict:
    """Decode the same ``per_class`` prior latents with every class; ``classify(z, c)`` gives the
    classifier's class ids of what class c's decoder makes of them."""
    z = prior_latents(vae, per_class, seed)
    names = vae.condition.names
    per, confused = {}, {}
    for c, name in enumerate(names):
        predicted = classify(z, c)
        per[name] = (predicted == c).float().mean().item()
        counts = torch.bincount(predicted, minlength=len(names))
        counts[c] = 0
        if counts.any():   # where the misses go: the most frequent wrong class and its share
            confused[name] = [names[int(counts.argmax())], r4(counts.max().item() / len(predicted))]
    return {"samples_per_class": per_class, "conditional_accuracy": r4(sum(per.values()) / len(per)),
            "conditional_accuracy_per_class": {k: r4(v) for k, v in per.items()},
            "most_confused_with": confused, "chance": r4(1 / len(names))}


def likelihoods(row: str, pair: dict, k: int, max_examples: int | None) -> tuple[dict, dict]:
    """Open both runs and evaluate their test IW-NLL alike; (runs, model figures)."""
    from vaezoo.train.evaluation import evaluate_split
    from vaezoo.train.runs import open_run

    runs, figures = {}, {}
    for model, info in pair.items():
        run = open_run(info["trained"].result.run_dir, device="cpu")
        shown = "the recipe's eval.max_examples" if max_examples is None else max_examples or "all"
        log(f"{row}/{model}: test IW-NLL (k={k}, {shown} examples)")
        started = time.perf_counter()
        e = evaluate_split(run.modality, run.vae, "test", device=run.device, iw_samples=k, max_examples=max_examples,
                           show_progress=False)
        figures[model] = {**model_figures(info, run, e), "eval_seconds": round(time.perf_counter() - started, 1)}
        log(f"{row}/{model}: IW-NLL {e.iw_nll:.3f}, ELBO {e.elbo:.3f}, KL {e.kl:.3f}")
        runs[model] = run
    return runs, figures


def row_record(row: str, runs: dict, figures: dict, classifier: dict, scores: dict) -> dict:
    run = runs["conditional"]
    c, u = figures["conditional"], figures["unconditional"]
    return {"row": row, "recipe": f"recipes/{ROWS[row][0]}.toml",
            "classes": run.vae.condition.classes, "class_names": run.vae.condition.names,
            "condition": {k: getattr(run.recipe.condition, k) for k in ("key", "embedding_dim", "encoder")},
            "classifier": classifier, **scores,
            "iw_nll_conditional_minus_unconditional": r4(c["iw_nll"] - u["iw_nll"]),
            "log_classes": r4(math.log(run.vae.condition.classes)),
            "conditional": c, "unconditional": u}


# -- Fashion-MNIST -------------------------------------------------------------------------------


def fmnist_row(row: str, args: argparse.Namespace) -> dict:
    net, meta = fid_fmnist.feature_network(args.classifier_epochs, args.seed, echo=log)
    test_images, test_labels = fid_fmnist.fmnist_arrays("t10k")
    with torch.no_grad():
        predicted = torch.cat([net(test_images[i:i + 1000]).argmax(1) for i in range(0, len(test_images), 1000)])
    pair = train_pair(row, args)
    runs, figures = likelihoods(row, pair, args.fmnist_k, args.fmnist_test_examples)
    vae = runs["conditional"].vae
    names = vae.condition.names
    classifier = classifier_figures("fid_fmnist CNN (benchmarks/.cache)", predicted, test_labels, names,
                                    metadata_test_accuracy=float(meta["test_accuracy"]), epochs=int(meta["epochs"]))

    @torch.no_grad()
    def classify(z: torch.Tensor, c: int) -> torch.Tensor:
        return torch.cat([net(vae.decode(z[i:i + 500], c).mean.float()).argmax(1) for i in range(0, len(z), 500)])

    log(f"{row}: classifying {args.fmnist_per_class} decoded prior samples per class")
    scores = conditional_accuracy(vae, args.fmnist_per_class, args.seed, classify)
    scores["target"] = FMNIST_TARGET
    scores["meets_target"] = scores["conditional_accuracy"] >= FMNIST_TARGET
    return row_record(row, runs, figures, classifier, scores)


# -- text ----------------------------------------------------------------------------------------


def text_row(args: argparse.Namespace) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pair = train_pair("text", args)
    runs, figures = likelihoods("text", pair, args.text_k, args.text_test_examples or None)
    run = runs["conditional"]
    vae, m = run.vae, run.modality
    names = vae.condition.names
    if names != m.label_names:
        raise SystemExit(f"text: the model's classes {names} differ from the data's {m.label_names}")
    log("text: fitting the bag-of-words classifier on the training sentences")
    started = time.perf_counter()
    clf = make_pipeline(CountVectorizer(), LogisticRegression(max_iter=2000, random_state=args.seed))
    clf.fit(m.sentences("train"), m.sentence_labels("train"))
    fit_seconds = time.perf_counter() - started
    index = {name: i for i, name in enumerate(names)}

    def ids(sentences: list[str]) -> torch.Tensor:
        return torch.tensor([index[label] for label in clf.predict(sentences)])

    truth = torch.tensor([index[label] for label in m.sentence_labels("test")])
    classifier = classifier_figures("CountVectorizer + LogisticRegression", ids(m.sentences("test")), truth, names,
                                    train_examples=len(m.sentences("train")), fit_seconds=round(fit_seconds, 1))
    examples, distinct = {}, {}

    @torch.no_grad()
    def classify(z: torch.Tensor, c: int) -> torch.Tensor:
        sentences = [s for i in range(0, len(z), 100) for s in m.generate_text(vae.decode(z[i:i + 100], c))]
        examples[names[c]] = sentences[:TEXT_EXAMPLES]
        distinct[names[c]] = r4(len(set(sentences)) / len(sentences))
        return ids(sentences)

    log(f"text: generating and classifying {args.text_per_class} sentences per class "
        f"({run.recipe.generate.strategy} search)")
    scores = conditional_accuracy(vae, args.text_per_class, args.seed, classify)
    scores.update(generation=run.recipe.generate.strategy, distinct_samples=distinct, examples=examples)
    return row_record("text", runs, figures, classifier, scores)


# -- audio ---------------------------------------------------------------------------------------


class MelNet(nn.Module):
    """3 x (conv - ReLU - pool) on a standardised log-mel clip [N, 1, M, T], averaged over time
    (a language shows in the spectrum, not in where a sound starts), then one linear layer."""

    def __init__(self, n_mels: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * (n_mels // 8), classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(-1))


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[i:i + 256].float()).argmax(1) for i in range(0, len(x), 256)])


def audio_classifier(run, args: argparse.Namespace) -> tuple[MelNet, dict]:
    """MelNet trained on the training recordings (a random crop of each per epoch); its test figures."""
    from torch.utils.data import DataLoader

    from vaezoo.core.data import split_batches

    m, names = run.modality, run.vae.condition.names
    test = list(split_batches(m, "test", 256))
    test_x, test_y = torch.cat([b["x"] for b in test]), torch.cat([b["label"] for b in test])
    torch.manual_seed(args.seed)   # the weights and the training crops (drawn from the global RNG)
    net = MelNet(m.recipe.features.n_mels, len(names))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(m.dataset("train"), batch_size=32, shuffle=True, collate_fn=m.collate,
                        generator=torch.Generator().manual_seed(args.seed))
    started = time.perf_counter()
    for epoch in range(args.audio_classifier_epochs):
        net.train()
        for batch in loader:
            loss = nn.functional.cross_entropy(net(batch["x"]), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.audio_classifier_epochs:
            log(f"audio: classifier epoch {epoch + 1}: test accuracy "
                f"{(predict(net, test_x) == test_y).float().mean().item():.4f}")
    return net, classifier_figures("MelNet CNN on standardised log-mel clips", predict(net, test_x), test_y, names,
                                   train_recordings=len(m.dataset("train")), epochs=args.audio_classifier_epochs,
                                   train_seconds=round(time.perf_counter() - started, 1))


def audio_row(args: argparse.Namespace) -> dict:
    pair = train_pair("audio", args)
    runs, figures = likelihoods("audio", pair, args.audio_k, 0)
    run = runs["conditional"]
    if run.vae.condition.names != run.modality.label_names:
        raise SystemExit(f"audio: the model's classes differ from the data's {run.modality.label_names}")
    log(f"audio: training the classifier ({args.audio_classifier_epochs} epochs)")
    net, classifier = audio_classifier(run, args)

    @torch.no_grad()
    def classify(z: torch.Tensor, c: int) -> torch.Tensor:
        return predict(net, run.vae.decode(z, c).mean)

    log(f"audio: classifying {args.audio_per_class} decoded prior samples per class")
    scores = conditional_accuracy(run.vae, args.audio_per_class, args.seed, classify)
    return row_record("audio", runs, figures, classifier, scores)


# -- summary -------------------------------------------------------------------------------------


def summarise(records: list[dict], extra: dict) -> dict:
    summary: dict = {"summary": True, **extra}
    for r in records:
        c, u = r["conditional"], r["unconditional"]
        summary[r["row"]] = {
            "classifier_test_accuracy": r["classifier"]["test_accuracy"],
            "conditional_accuracy": r["conditional_accuracy"], "chance": r["chance"],
            **({"meets_target": r["meets_target"]} if "meets_target" in r else {}),
            "iw_nll": {"conditional": c["iw_nll"], "unconditional": u["iw_nll"]},
            "iw_nll_conditional_minus_unconditional": r["iw_nll_conditional_minus_unconditional"],
            "train_seconds": {"conditional": c["train_seconds"], "unconditional": u["train_seconds"]},
        }
    return summary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    p.add_argument("--max-steps", type=int, default=0, help="train.max_steps of every model (0 = the recipes' budget)")
    p.add_argument("--fmnist-epochs", type=int, default=0, help="train.epochs of the fmnist row (0 = the recipe's 3)")
    p.add_argument("--fmnist-long-epochs", type=int, default=10, help="train.epochs of the fmnist-long row")
    p.add_argument("--fmnist-per-class", type=int, default=1000, help="decoded prior samples per class")
    p.add_argument("--fmnist-k", type=int, default=200, help="importance samples of the Fashion-MNIST IW-NLL")
    p.add_argument("--fmnist-test-examples", type=int, default=1000, help="first N test images of the IW-NLL")
    p.add_argument("--classifier-epochs", type=int, default=3, help="the fid_fmnist classifier's (selects its cache file)")
    p.add_argument("--text-per-class", type=int, default=200, help="generated sentences per class")
    p.add_argument("--text-k", type=int, default=50, help="importance samples of the text IW-NLL")
    p.add_argument("--text-test-examples", type=int, default=0, help="first N test sentences (0 = the recipe's eval.max_examples)")
    p.add_argument("--audio-per-class", type=int, default=50, help="decoded prior clips per class")
    p.add_argument("--audio-k", type=int, default=20, help="importance samples of the klettres IW-NLL (every test clip)")
    p.add_argument("--audio-classifier-epochs", type=int, default=20)
    p.add_argument("--condition", action="append", default=[], metavar="KEY=VALUE",
                   help="a [condition] option of every conditional model, e.g. embedding_dim=64 (repeatable)")
    add_run_options(p, "conditional", RESULTS)
    return parse_run_args(p, ROWS)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from vaezoo.core.progress import progress_bars

    results = ResultsFile(args.out, "conditional.py", args.threads, args.seed,
                          budget="the same recipe, data, seed and budget for both models of a row",
                          torch_threads=torch.get_num_threads())
    with progress_bars(False):
        for row in args.rows:
            results.emit(text_row(args) if row == "text" else audio_row(args) if row == "audio" else fmnist_row(row, args))
    results.finish(summarise)


if __name__ == "__main__":
    main()
