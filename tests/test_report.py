"""`vaezoo report`: a static page whose every link resolves, and which a browser renders cleanly."""

import json
import math
import os
import shutil
import struct
import wave
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner
from PIL import Image

from vaezoo.cli import main
from vaezoo.analysis.curves import focus_range, series

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class PageParser(HTMLParser):
    """Collects links and checks that every element is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.links, self.tags, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key):
                self.links.append((tag, attrs[key]))
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def write_wav(path: Path, seconds: float = 0.3, rate: int = 8000) -> None:
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(frames)


@pytest.fixture(scope="module")
def reported(labelled_run, tmp_path_factory):
    """A copy of the tiny run with a file of each kind a writer may leave, and its report."""
    run = tmp_path_factory.mktemp("report") / "my run"      # a space: links must be URL-quoted
    shutil.copytree(labelled_run, run)
    (run / "curves.png").unlink()                           # the report draws missing curves again
    samples = run / "samples"
    Image.new("L", (20, 10), 200).save(samples / "grid.png")
    (samples / "sentences.txt").write_text("a <b>bold</b> sentence\nthe second one\n")
    # Blank lines make blocks: a sentence with its reconstruction is one entry.
    (samples / "reconstructions.txt").write_text("the cat sat\nthe cat sat down\n\na dog ran\na dog ran off\n\n")
    write_wav(samples / "prior-00.wav")
    write_wav(samples / "prior-01.wav")
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return run, (run / "report.html").read_text()


def test_report_is_well_formed_and_every_link_exists(reported):
    run, html = reported
    parser = PageParser()
    parser.feed(html)
    parser.close()
    assert parser.errors == [] and [t for t, _ in parser.stack] == []
    assert html.startswith("<!DOCTYPE html>")
    local = [(tag, link) for tag, link in parser.links if not link.startswith(("#", "data:"))]
    for tag, link in local:
        assert not link.startswith(("/", "file:")), f"{link} is not relative"
        assert (run / unquote(link)).is_file(), f"<{tag}> links to missing {link}"
    linked = {unquote(link) for _, link in local}
    assert {"curves.png", "samples/grid.png", "samples/prior-00.wav", "samples/prior-01.wav",
            "latent-map/test-pca.png", "latent-map/test-pca.csv", "samples/prior.csv"} <= linked
    assert parser.tags.count("audio") == 2 and parser.tags.count("img") == 3   # curves, grid, latent map


def test_report_shows_the_run(reported):
    run, html = reported
    assert (run / "curves.png").exists() and (run / "latent-map" / "test-pca.json").exists()
    assert "a &lt;b&gt;bold&lt;/b&gt; sentence" in html and "the second one" in html   # text is escaped
    assert "<li>a &lt;b&gt;bold&lt;/b&gt; sentence</li>" in html and "<li>the second one</li>" in html
    assert "<li>the cat sat<br>the cat sat down</li>" in html and "<li>a dog ran<br>a dog ran off</li>" in html
    assert html.count("<li></li>") == 0
    assert "IW-NLL (k=20)" in html and "adjusted Rand index" in html
    assert 'kl_warmup_steps = 10' in html                   # the recipe
    eval_json = json.loads((run / "eval.json").read_text())
    assert f"{eval_json['elbo']:.4f}" in html
    assert f"best (step {eval_json['weights_step']})" in html    # which weights the table measured


def test_report_elsewhere_links_back_into_the_run(reported, tmp_path):
    run, _ = reported
    out = tmp_path / "pages" / "r.html"
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(out), "--no-latent-map"])
    assert result.exit_code == 0, result.output
    parser = PageParser()
    parser.feed(out.read_text())
    links = [unquote(link) for _, link in parser.links if not link.startswith(("#", "data:"))]
    assert links and all(link.startswith("../../") and (out.parent / link).is_file() for link in links)


def test_report_of_a_folder_that_is_no_run(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory (recipe.toml is missing)" in result.output


def test_report_names_a_broken_eval_json_and_notes_missing_weights(labelled_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(labelled_run, run, ignore=shutil.ignore_patterns("*.safetensors", "latent-map"))
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output                     # no weights: a page without a map
    assert "no latent map" in (run / "report.html").read_text() and "no weights yet" in result.output
    (run / "eval.json").write_text("{ half a file")
    result = CliRunner().invoke(main, ["report", str(run), "--no-latent-map"])
    assert result.exit_code == 2 and "eval.json: unreadable" in result.output and "Traceback" not in result.output


def test_curve_series_follow_the_metrics():
    records = [
        {"split": "train", "step": 1, "loss": 5.0, "kl": 1.0, "reconstruction": -4.0, "beta": 0.0},
        {"split": "train", "step": 2, "loss": 4.0, "kl": 1.5, "reconstruction": -2.5, "beta": 0.5},
        {"split": "validation", "step": 2, "loss": 4.5, "kl": 1.2, "active_units": 2, "mutual_information": 0.7},
        {"split": "timing", "step": 2, "train_seconds": 1.0},
    ]
    data = series(records)
    assert data["loss"] == {"train": ([1, 2], [5.0, 4.0]), "validation": ([2], [4.5])}
    assert data["beta"] == {"train": ([1, 2], [0.0, 0.5])}
    assert data["active_units"] == {"validation": ([2], [2.0])}
    assert "validation" not in data["reconstruction"]


def test_curves_zoom_past_a_huge_first_value_only():
    kl = [50000.0] + [100.0 + i % 20 for i in range(99)]
    low, high = focus_range([kl])
    assert (low, high) == pytest.approx((100 - 1.9, 119 + 1.9))
    assert focus_range([[5.0, 4.0, 3.0, 2.5] * 25]) is None                  # nothing to cut
    assert focus_range([[1.0] * 50]) is None                                 # flat


def find_browser() -> tuple[str, str] | None:
    for browser in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        if os.path.exists(browser) and os.path.exists(driver):
            return browser, driver
    return None


def test_report_renders_in_headless_chromium(reported, tmp_path):
    """Every image decodes and the console stays clean. CI (CI=true) must have the browser."""
    found = find_browser()
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    if found is None or webdriver is None:
        missing = "chromium and chromium-driver (Debian)" if found is None else "selenium (pip, the test extra)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI is set but {missing} is missing; `make test` installs it as root")
        pytest.skip(f"{missing} not installed; `make test` as root installs it")
    browser, driver_path = found
    run, _ = reported
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,2400",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get((run / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
        assert len(images) == 3
        assert all(complete and width > 0 for _, complete, width in images), images
        # The sound files decode too: each player learns its clip's duration (0.3 s).
        durations = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const players = Array.from(document.querySelectorAll('audio'));
            Promise.all(players.map(a => new Promise(resolve => {
                if (a.readyState >= 1) return resolve(a.duration);
                a.addEventListener('loadedmetadata', () => resolve(a.duration));
                a.addEventListener('error', () => resolve(-1));
                a.load();
            }))).then(done);""")
        assert durations == pytest.approx([0.3, 0.3], abs=0.01)
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        with Image.open(shot) as image:
            assert image.size[0] >= 1000 and image.convert("L").getextrema()[0] < 100   # text was drawn
    finally:
        driver.quit()
