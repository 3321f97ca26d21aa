"""Memory and time of the text plugin as the corpus grows: 200,000, 1,000,000 and 4,000,000 sentences.

For each size the benchmark writes a file of distinct generated sentences (a fixed vocabulary
of 110 words and phrases, see ``sentence``), then, each in a
fresh process (so each peak is its own):

- ``train``: `vaezoo train wordnet-quick` on the file for 5 steps (the measurement of issue
  #17: corpus streaming, tokenizer training, tokenizing into the run's token store, the
  model, 5 steps, validation and test on a few hundred sentences); peak resident memory
  (the child's ru_maxrss) and wall seconds;
- ``epoch``: one epoch of training batches from that run's token store through the loader
  and collate (the data side of an epoch: the same order and batches the trainer draws),
  seconds and sentences per second; a training epoch adds ``steps x seconds per step``,
  which does not depend on the corpus size;
- ``tokenize``: sentences per second of tokenizing the training split, the store's batched
  encoding (``vaezoo_text.store``) against the previous code's one transformers call on the
  whole list, with the peak memory of each (the list of sentences included).

    python benchmarks/text_scale.py [--sizes 200000,1000000,4000000] [--out FILE]

Prints one JSON line per size and a summary with the memory and time ratios to the
smallest size (benchmarks/results/text_scale.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from results_log import ROOT, ResultsFile, add_run_options, logger

RESULTS = ROOT / "benchmarks" / "results" / "text_scale.jsonl"
log = logger("text_scale")

SLOTS = [
    ["the cat", "a dog", "my friend", "the old man", "she", "he", "they", "the teacher", "a child", "the bird",
     "our neighbour", "the captain"],
    ["saw", "liked", "found", "carried", "painted", "followed", "remembered", "wrote about", "dreamed of", "sold",
     "built", "lost"],
    ["red", "small", "quiet", "heavy", "strange", "bright", "broken", "warm", "distant", "green", "old", "new", "tall",
     "empty"],
    ["house", "river", "letter", "boat", "garden", "window", "song", "tree", "bridge", "road", "book", "stone",
     "mountain", "city"],
    ["near the sea", "in the morning", "after the storm", "by the old mill", "during the war", "at night", "in spring",
     "on the hill"],
    ["", "again", "slowly", "at last", "once more", "with care", "without a word", "for a while", "too soon",
     "in silence", "by chance", "with joy", "in the end", "all day", "every year", "last week", "yesterday", "today",
     "twice", "quietly", "alone", "together", "secretly", "gladly", "sadly", "bravely", "early", "late", "here",
     "there"],
]
COMBINATIONS = 1
for _slot in SLOTS:
    COMBINATIONS *= len(_slot)          # 6,773,760 distinct sentences from 110 words and phrases


def sentence(i: int) -> str:
    """The i-th of COMBINATIONS distinct sentences: i scattered by a multiplier coprime to
    COMBINATIONS (so 0..n-1 give n distinct ones in no tidy order), then read as mixed-radix
    digits, one per slot. The vocabulary stays fixed whatever n is, as in real text, where
    words repeat (sentences numbered by a unique token would grow the tokenizer's counts
    with the corpus instead)."""
    code = (i * 2_654_435_761) % COMBINATIONS
    words = []
    for slot in SLOTS:
        code, digit = divmod(code, len(slot))
        words.append(slot[digit])
    subject, verb, adjective, noun, place, manner = words
    return " ".join(w for w in (subject, verb, "the", adjective, noun, place, manner) if w)


def write_corpus(path: Path, n: int) -> Path:
    """``n`` distinct sentences, written once."""
    if n > COMBINATIONS:
        raise SystemExit(f"at most {COMBINATIONS:,} distinct sentences; asked for {n:,}")
    if path.is_file() and sum(1 for _ in path.open("rb")) == n:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(sentence(i) + "\n")
    return path


EPOCH_CODE = """
import json, sys, time, resource
import torch
import vaezoo
from vaezoo.core.data import make_loader
torch.set_num_threads(1)
run = vaezoo.open_run(sys.argv[1])
modality = run.modality
data = modality.dataset("train")
started = time.perf_counter()
batches = sentences = 0
for batch in make_loader(data, modality.collate, 64, shuffle=True, seed=0, epoch=0, drop_last=True):
    batches += 1
    sentences += batch["x"].shape[0]
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "batches": batches, "sentences": sentences,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TOKENIZE_CODE = """
import json, sys, time
from vaezoo_text.tokenizer import encode, load_tokenizer
from vaezoo_text.data import iter_lines
tokenizer = load_tokenizer(sys.argv[1])
sentences = list(iter_lines(sys.argv[2]))
started = time.perf_counter()
if sys.argv[3] == "previous":       # the previous code: one transformers call on the whole list
    ids = tokenizer(sentences, add_special_tokens=False, truncation=True, max_length=31)["input_ids"]
    ids = [row + [tokenizer.eos_token_id] for row in ids]
else:                               # the store: the backend's batch encoding, 8,192 sentences a call
    for i in range(0, len(sentences), 8192):
        ids = encode(tokenizer, sentences[i:i + 8192], 32)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "sentences_per_second": len(sentences) / seconds}))
"""


def run_size(n: int, args: argparse.Namespace) -> dict:
    corpus = write_corpus(args.work / f"sentences-{n}.txt", n)
    run_dir = args.work / f"run-{n}"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    log(f"{n:,} sentences: training 5 steps")
    train = [str(Path(sys.executable).with_name("vaezoo")), "train", "wordnet-quick", "--run-dir", str(run_dir),
             "--set", f"data.path={corpus}", "--set", "data.format=lines", "--set", "train.max_steps=5",
             "--set", "train.samples=0", "--set", "train.val_max_examples=200", "--set", "eval.max_examples=200",
             "--no-progress"]
    peak, seconds = peak_of(train)
    record: dict = {"row": f"{n}", "sentences": n, "train_5_steps": {"peak_mb": round(peak, 1), "seconds": round(seconds, 1)}}
    log(f"{n:,}: peak {peak:.0f} MB, {seconds:.0f} s; one data epoch")
    peak, seconds, out = python_child(EPOCH_CODE, str(run_dir))
    epoch = json.loads(out.strip().splitlines()[-1])
    record["data_epoch"] = {"seconds": round(epoch["seconds"], 2), "batches": epoch["batches"],
                            "sentences_per_second": round(epoch["sentences"] / epoch["seconds"]),
                            "peak_mb": round(epoch["peak_mb"], 1)}
    train_file = args.work / f"train-{n}.txt"
    if n <= args.compare_up_to:
        log(f"{n:,}: tokenizing, batched against whole")
        write_split(run_dir, train_file)
        record["tokenize"] = {}
        for way in ("store", "previous"):
            peak, seconds, out = python_child(TOKENIZE_CODE, str(run_dir), str(train_file), way)
            figures = json.loads(out.strip().splitlines()[-1])
            record["tokenize"][way] = {"sentences_per_second": round(figures["sentences_per_second"]),
                                       "peak_mb": round(peak, 1)}
        train_file.unlink()
    log(json.dumps(record))
    return record


def write_split(run_dir: Path, path: Path) -> None:
    """The run's training sentences, one per line (what the tokenize comparison encodes)."""
    code = ("import sys, vaezoo\nrun = vaezoo.open_run(sys.argv[1])\n"
            "open(sys.argv[2], 'w').write('\\n'.join(run.modality.sentences('train')) + '\\n')\n")
    subprocess.run([sys.executable, "-c", code, str(run_dir), str(path)], check=True)


def peak_of(command: list[str]) -> tuple[float, float]:
    """Peak resident MB (ru_maxrss of the child, from wait4) and wall seconds of a command."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{err.decode()[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def python_child(code: str, *argv: str) -> tuple[float, float, str]:
    """Peak MB, seconds and stdout of ``python -c code argv...``."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = child.stdout.read(), child.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"python -c ... {' '.join(argv)} failed:\n{err.decode()[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started, out.decode()


def summarise(records: list[dict], info: dict) -> dict:
    base = records[0]
    summary: dict = {"summary": True, **info, "sizes": [r["sentences"] for r in records]}
    summary["train_peak_mb_ratio"] = {r["row"]: round(r["train_5_steps"]["peak_mb"] / base["train_5_steps"]["peak_mb"], 3)
                                      for r in records}
    summary["data_epoch_seconds_per_million"] = {
        r["row"]: round(r["data_epoch"]["seconds"] / r["sentences"] * 1e6, 2) for r in records}
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="200000,1000000,4000000", help="comma-separated corpus sizes")
    p.add_argument("--compare-up-to", type=int, default=1_000_000,
                   help="compare the store's and the previous tokenization for sizes up to this (the previous one "
                        "holds every sentence's ids)")
    add_run_options(p, "text_scale", RESULTS)
    args = p.parse_args()
    args.work = args.work.resolve()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = ResultsFile(args.out, "text_scale.py", args.threads, args.seed)
    for n in sizes:
        results.emit(run_size(n, args))
    results.finish(summarise)


if __name__ == "__main__":
    main()
