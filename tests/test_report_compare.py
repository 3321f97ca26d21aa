"""`vaezoo report RUN --compare OTHER`, and the adversarial (VAE-GAN) phase in the report and
curves.png, on two run directories written by hand (no training)."""

import json
import math
import struct
import wave
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner
from PIL import Image

from vaezoo.analysis.curves import ADVERSARIAL_PANELS, PANELS, event_step, panels, series
from vaezoo.analysis.report import training_rows
from vaezoo.cli import main

ADVERSARIAL_KEYS = ("disc_loss", "disc_real", "disc_fake", "gen_adversarial", "feature_matching")
START = 60          # the adversarial phase's first step in the VAE-GAN run


class Page(HTMLParser):
    """Links (tag, url) and the rows of <table class="compare"> as lists of cell texts."""

    def __init__(self, html: str):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self._in_compare = False
        self._cell: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith(("#", "data:")):
                self.links.append((tag, attrs[key]))
        if tag == "table" and attrs.get("class") == "compare":
            self._in_compare = True
        elif self._in_compare and tag == "tr":
            self.rows.append([])
        elif self._in_compare and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_compare = False
        elif self._cell is not None and tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def write_wav(path: Path, seconds: float = 0.1, rate: int = 8000) -> None:
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(frames)


def metrics(adversarial: bool) -> list[dict]:
    records = []
    for step in range(10, 101, 10):
        record = {"split": "train", "step": step, "epoch": step // 50, "loss": 200.0 - step, "elbo": step - 200.0,
                  "reconstruction": step - 190.0, "kl": 10.0, "beta": 1.0}
        if adversarial and step == START:
            records.append({"split": "event", "step": START, "epoch": 1, "event": "adversarial_start"})
        if adversarial and step >= START:
            record.update(disc_loss=1.5 - step / 100, disc_real=step / 50, disc_fake=-step / 50,
                          gen_adversarial=2.0 + step / 100, feature_matching=0.25 + step / 1000)
        records.append(record)
        if step % 50 == 0:
            records.append({"split": "timing", "step": step, "epoch": step // 50 - 1, "train_seconds": 2.0,
                            "examples_per_second": 1000.0})
            records.append({"split": "validation", "step": step, "epoch": step // 50 - 1, "loss": 205.0 - step,
                            "kl": 11.0, "reconstruction": step - 194.0, "active_units": 7, "mutual_information": 3.5})
    return records


def make_run(path: Path, name: str, *, adversarial: bool, eval_json: dict, only: str) -> Path:
    """A run directory as training leaves it, less the weights: samples prior.png,
    reconstructions.txt and sound-00/01.wav, plus a group named ``only`` no other run has."""
    samples = path / "samples"
    samples.mkdir(parents=True)
    (path / "recipe.toml").write_text(f'name = "{name}"\nmodality = "image"\nseed = 0\n')
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics(adversarial)))
    (path / "eval.json").write_text(json.dumps(eval_json))
    Image.new("L", (16, 8), 100 if adversarial else 200).save(samples / "prior.png")
    (samples / "reconstructions.txt").write_text(f"{name} first line\n{name} second line\n")
    write_wav(samples / "sound-00.wav")
    write_wav(samples / "sound-01.wav")
    Image.new("L", (8, 8), 50).save(samples / f"{only}.png")
    return path


GAN_EVAL = {"split": "test", "step": 100, "weights": "best", "weights_step": 90, "n_examples": 500, "elbo": -101.25,
            "reconstruction": -90.5, "kl": 10.75, "iw_nll": 99.125, "iw_samples": 20, "active_units": 9,
            "mutual_information": 4.0625, "kl_per_dim": [1.0, 2.0], "extra": {"fid": 12.5}}
PLAIN_EVAL = {"split": "test", "step": 100, "weights": "best", "weights_step": 100, "n_examples": 500, "elbo": -98.5,
              "reconstruction": -88.0, "kl": 10.5, "iw_nll": 96.0, "iw_samples": 20, "active_units": 11,
              "mutual_information": 3.875, "kl_per_dim": [1.0, 2.0], "extra": {}}


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    # Spaces in the folder names: the links must be URL-quoted.
    gan = make_run(tmp_path / "runs" / "gan run", "vae-gan", adversarial=True, eval_json=GAN_EVAL, only="traversal-zeros")
    plain = make_run(tmp_path / "runs" / "plain vae", "plain", adversarial=False, eval_json=PLAIN_EVAL,
                     only="interpolation-linear")
    return gan, plain


def report(*args) -> object:
    return CliRunner().invoke(main, ["report", *map(str, args), "--no-latent-map"])


def beside_section(html: str) -> str:
    start = html.index('<h2 id="beside-1">')
    return html[start:html.index('<h2 id="latent-map">')]


def test_compare_shows_both_runs_samples_side_by_side(runs):
    gan, plain = runs
    result = report(gan, "--compare", plain)
    assert result.exit_code == 0, result.output
    html = (gan / "report.html").read_text()
    section = beside_section(html)
    assert section.startswith('<h2 id="beside-1">Beside plain</h2>') and str(plain) in section
    assert 'href="#beside-1">beside plain</a>' in html

    # Every link of the page resolves from the page's folder; both runs' files are linked.
    page = Page(html)
    for tag, link in page.links:
        assert not link.startswith(("/", "file:")), f"{link} is not relative"
        assert (gan / unquote(link)).is_file(), f"<{tag}> links to missing {link}"
    linked = {unquote(link) for _, link in page.links}
    assert {"samples/prior.png", "samples/sound-00.wav", "samples/reconstructions.txt",
            "../plain vae/samples/prior.png", "../plain vae/samples/sound-00.wav",
            "../plain vae/samples/sound-01.wav", "../plain vae/samples/reconstructions.txt"} <= linked

    # The shared groups, each run's files in its own column: this run left, the other right.
    beside = Page(section)
    in_section = [unquote(link) for _, link in beside.links]
    assert in_section == ["samples/prior.png", "../plain vae/samples/prior.png",
                          "samples/reconstructions.txt", "../plain vae/samples/reconstructions.txt",
                          "samples/sound-00.wav", "samples/sound-01.wav",
                          "../plain vae/samples/sound-00.wav", "../plain vae/samples/sound-01.wav"]
    assert beside.tags.count("img") == 2 and beside.tags.count("audio") == 4
    assert "<li>vae-gan first line</li>" in section and "<li>plain first line</li>" in section
    assert [h for h in ("<h3>prior</h3>", "<h3>reconstructions</h3>", "<h3>sound</h3>") if h in section] == \
        ["<h3>prior</h3>", "<h3>reconstructions</h3>", "<h3>sound</h3>"]
    assert section.count('<div class="beside">') == 3
    # A group only one run has is not paired but named under the table.
    assert "<h3>traversal-zeros</h3>" not in section and "interpolation-linear.png" not in section
    assert "only in this run: traversal-zeros" in section and "only in plain: interpolation-linear" in section
    assert section.index("<table") < section.index("only in this run")


def test_compare_table_has_both_runs_numbers(runs):
    gan, plain = runs
    assert report(gan, "--compare", plain).exit_code == 0
    rows = Page(beside_section((gan / "report.html").read_text())).rows
    assert rows[0] == ["", "vae-gan (this run)", "plain"]
    table = {row[0]: row[1:] for row in rows[1:]}
    assert all(len(cells) == 2 for cells in table.values())
    assert table["ELBO"] == ["-101.2500", "-98.5000"]
    assert table["IW-NLL"] == ["99.1250", "96.0000"]
    assert table["KL"] == ["10.7500", "10.5000"]
    assert table["active units"] == ["9", "11"]
    assert table["mutual information"] == ["4.0625", "3.8750"]
    assert table["split"] == ["test", "test"]
    assert table["reconstruction"] == ["-90.5000", "-88.0000"]       # another number both have
    assert table["weights of step"] == ["90", "100"]
    # The named five first; a number only one run has (fid) and lists (kl_per_dim) are left out.
    assert [row[0] for row in rows[2:7]] == ["ELBO", "IW-NLL", "KL", "active units", "mutual information"]
    assert "fid" not in table and not any("kl_per_dim" in label for label in table)


def test_compare_both_ways_and_several_runs(runs, tmp_path):
    gan, plain = runs
    third = make_run(tmp_path / "third", "third", adversarial=False, eval_json={"elbo": -1.0}, only="other")
    result = report(plain, "--compare", gan, "--compare", third)
    assert result.exit_code == 0, result.output
    html = (plain / "report.html").read_text()
    assert '<h2 id="beside-1">Beside vae-gan</h2>' in html and '<h2 id="beside-2">Beside third</h2>' in html
    first = html[html.index('<h2 id="beside-1">'):html.index('<h2 id="beside-2">')]
    assert "only in vae-gan: traversal-zeros" in first and "only in this run: interpolation-linear" in first
    assert {"ELBO": ["-98.5000", "-101.2500"]}.items() <= {r[0]: r[1:] for r in Page(first).rows}.items()
    second = html[html.index('<h2 id="beside-2">'):html.index('<h2 id="latent-map">')]
    assert [r for r in Page(second).rows] == [["", "plain (this run)", "third"], ["ELBO", "-98.5000", "-1.0000"]]
    assert unquote(Page(second).links[0][1]) == "samples/prior.png"


def test_compare_links_from_a_page_written_elsewhere(runs, tmp_path):
    gan, plain = runs
    out = tmp_path / "pages" / "deeper" / "r.html"
    result = report(gan, "--compare", plain, "--out", out)
    assert result.exit_code == 0, result.output
    links = [unquote(link) for _, link in Page(out.read_text()).links]
    assert "../../runs/plain vae/samples/prior.png" in links and "../../runs/gan run/samples/prior.png" in links
    assert all(link.startswith("../../runs/") and (out.parent / link).is_file() for link in links)
    assert not (gan / "report.html").exists()


def test_curves_get_a_third_row_only_for_the_adversarial_run(runs):
    gan, plain = runs
    assert report(gan, "--compare", plain).exit_code == 0
    assert not (plain / "curves.png").exists()                    # the other run's curves are not drawn
    assert report(plain).exit_code == 0
    with Image.open(gan / "curves.png") as g, Image.open(plain / "curves.png") as p:
        assert p.size == (1200, 650)                              # 2 x 3 panels, as without the stage
        assert g.size == (1200, 975)                              # a third row
    gan_html, plain_html = (gan / "report.html").read_text(), (plain / "report.html").read_text()
    assert "dashed line marks where the phase began" in gan_html
    assert "dashed line" not in plain_html


def test_the_panels_picked_follow_the_adversarial_keys():
    plain, gan = metrics(adversarial=False), metrics(adversarial=True)
    assert panels(series(plain)) == PANELS and event_step(plain) is None
    assert panels(series(gan)) == PANELS + ADVERSARIAL_PANELS and event_step(gan) == START
    assert [title for _, title, _ in panels(series(gan))[6:]] == [
        "discriminator loss", "generator: adversarial and feature matching", "discriminator scores"]
    data = series(gan)
    assert data["disc_real"]["train"][0] == [60, 70, 80, 90, 100]
    assert data["feature_matching"]["train"][1][0] == pytest.approx(0.31)
    # Any one of the keys is enough for the row.
    one = [dict(r) for r in plain] + [{"split": "train", "step": 110, "epoch": 2, "loss": 1.0, "disc_fake": -1.0}]
    assert panels(series(one)) == PANELS + ADVERSARIAL_PANELS
    # Only training records count.
    validation = plain + [{"split": "validation", "step": 110, "disc_loss": 0.5}]
    assert panels(series(validation)) == PANELS


def test_training_rows_show_the_adversarial_phase(runs):
    gan, plain = runs
    rows = dict(training_rows(metrics(adversarial=True)))
    assert rows["adversarial phase from"] == "step 60"
    assert rows["last discriminator loss"] == "0.5000"
    assert rows["last discriminator score, real (logit)"] == "2.0000"
    assert rows["last discriminator score, fake (logit)"] == "-2.0000"
    assert rows["last generator adversarial loss"] == "3.0000"
    assert rows["last feature matching"] == "0.3500"
    assert rows["optimiser steps"] == "100" and rows["epochs"] == "2"
    plain_rows = dict(training_rows(metrics(adversarial=False)))
    assert not any("discriminator" in label or "adversarial" in label for label in plain_rows)
    assert report(gan).exit_code == 0
    html = (gan / "report.html").read_text()
    assert '<tr><th>adversarial phase from</th><td class="num">step 60</td></tr>' in html
    assert '<tr><th>last discriminator loss</th><td class="num">0.5000</td></tr>' in html
    assert 'id="beside-' not in html                              # no --compare, no section


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("with_report", [False, True], ids=["no-report-yet", "report-exists"])
def test_compare_with_bad_input_writes_nothing(runs, tmp_path, with_report):
    gan, plain = runs
    if with_report:
        assert report(gan).exit_code == 0
    (tmp_path / "not a run").mkdir()
    (tmp_path / "a file").write_text("x")
    before = snapshot(tmp_path)
    cases = [
        (tmp_path / "not a run", "not a run directory (recipe.toml is missing)"),
        (tmp_path / "a file", "not a run directory (recipe.toml is missing)"),
        (tmp_path / "missing", "not a run directory (recipe.toml is missing)"),
        (gan, "that is the run itself"),
        (gan / ".." / "gan run", "that is the run itself"),       # the same folder spelled otherwise
    ]
    for other, message in cases:
        result = report(gan, "--compare", plain, "--compare", other)
        assert result.exit_code == 2, (other, result.output)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --compare ") and message in lines[0], lines
        assert str(other) in lines[0] and "Traceback" not in result.output
        assert snapshot(tmp_path) == before                        # no report.html, no curves.png, nothing
    assert (gan / "report.html").exists() == with_report and (gan / "curves.png").exists() == with_report
