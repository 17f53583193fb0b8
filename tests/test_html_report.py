"""report.html: escaping, figures it references exist, tables, write_report end to end (from an
in-memory Optuna study, no training) and a real headless-Chromium render."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import types
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import optuna
import pytest
from test_plots import synthetic_record, synthetic_tables

from sweep.analysis.conclusions import compute_verdicts
from sweep.core.records import RUN_PREFIX, encode_record
from sweep.report.figures import write_figures
from sweep.report.html import CAPTIONS, render_html, write_html
from sweep.report.write import write_report
from sweep.store.studies import ATTR_CONFIG, ATTR_TASK

pytestmark = pytest.mark.xdist_group("html-report-study")  # one worker builds the module's study

CHROMIUM = Path("/usr/bin/chromium")
EVIL = '<script>alert("x")</script>'


class Page(HTMLParser):
    """The parts of the page the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.scripts = 0
        self.tables: dict[str, int] = {}  # table id -> body rows
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self._table = a.get("id")
            if self._table:
                self.tables[self._table] = 0
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table] += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None


def table_rows(text: str, table_id: str) -> list[dict[str, str]]:
    """The body rows of the page's table `table_id`, each as {column header: cell text}."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', text, re.S).group(0)
    head = [
        html.unescape(re.sub("<[^>]+>", "", h)).strip()
        for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)
    ]
    body = table.split("<tbody>", 1)[1]
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = [
            html.unescape(re.sub("<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        ]
        rows.append(dict(zip(head, cells)))
    return rows


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def evil_tables():
    t = synthetic_tables(lrs=(0.01, 0.1, 1.0), clips=(None, 1.0))
    t.meta = {
        "study": f"study{EVIL}",
        "config": {
            "study": {
                "name": f"study{EVIL}",
                "storage": "postgresql://alice:s3cret@db.example/sweeps",
            },
            "task": {"name": "file", "path": f"/data/{EVIL}&co.csv"},
            "model": {"name": "lstm"},
        },
        "task": {"name": "file", "kind": "classification", "chance": 0.1, "note": EVIL},
        "detect": {
            "drop": 0.5,
            "patience": 3,
            "min_gain": 0.05,
            "spike_factor": 1.5,
            "constant_frac": 0.95,
        },
    }
    return t


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of synthetic tables with hostile strings, written with its figures."""
    out = tmp_path_factory.mktemp("study")
    t = evil_tables()
    figures = write_figures(t, out)
    path = write_html(t, compute_verdicts(t), figures, out)
    return t, out, path, path.read_text(encoding="utf-8")


def test_text_from_configs_and_data_is_escaped(report):
    _, _, _, text = report
    assert EVIL not in text and "<script>alert" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "&amp;co.csv" in text
    assert parse(text).scripts == 1  # only the report's own static script


def test_no_password_from_the_storage_url(report):
    _, _, _, text = report
    assert "s3cret" not in text and "alice:***@db.example" in text


def test_every_referenced_figure_exists(report):
    _, out, _, text = report
    images = parse(text).images
    assert len(images) == 5
    assert all((out / src).is_file() for src in images)
    assert all(not src.startswith(("http:", "https:", "/")) for src in images)


def test_no_external_resources(report):
    _, _, _, text = report
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<link" not in text


def test_tables_summary_and_collapsed_runs(report):
    t, _, _, text = report
    page = parse(text)
    assert page.tables["summary"] == len(t.summary) == 6
    assert page.tables["collapsed"] == int(t.runs["collapsed"].sum()) == 3
    assert page.tables["slices"] == 2
    # each collapsed run is a row of the collapsed table, with its own mode and epoch (the words
    # themselves are always on the page, as column headers: the cells must hold them)
    rows = table_rows(text, "collapsed")
    bad = t.runs[t.runs["collapsed"].astype(bool)]
    assert sorted((r["seed"], r["collapse_mode"], r["collapse_epoch"]) for r in rows) == sorted(
        (str(s), m, str(e))
        for s, m, e in zip(bad["seed"], bad["collapse_mode"], bad["collapse_epoch"])
    )
    assert {r["collapse_mode"] for r in rows} == {"constant_output", "nonfinite"}
    assert 'class="best"' in text  # the recommended row is highlighted


def test_verdicts_and_thresholds_are_on_the_page(report):
    t, _, _, text = report
    v = compute_verdicts(t)
    from html import escape

    assert escape(v.reading) in text
    assert "Recommended:" in text and "spike_factor" in text and "constant_frac" in text
    for kind in ("collapse_rate", "mean_best_acc", "lr_curves", "learning_curves", "grad_norms"):
        assert escape(CAPTIONS[kind]) in text


def _users_study_tables(trainer):
    """Synthetic tables as a study trained by a user's `trainer` node records them: the config
    still holds the schema's task, model and optimizer, which played no part."""
    t = synthetic_tables(lrs=(0.01, 0.1, 1.0), clips=(None, 1.0))
    t.meta = {
        "study": "mine",
        "config": {
            "task": {"name": "digits", "data_seed": 0},
            "trainer": trainer,
            "model": {"name": "lstm", "hidden_size": 64, "layers": 2},
            "optimizer": {"name": "sgd", "momentum": 0.9},
            "schedule": {"name": "constant"},
            "grid": {"lr": [0.01, 0.1, 1.0], "clip": [None, 1.0], "batch_size": [32]},
            "study": {"name": "mine", "storage": "sqlite:///results/lrsweep.db"},
            "find": {"lr_min": 1e-5},
            "packing": "auto",
            "checkpoint_every": 10,
            "epochs": 12,
            "threads": 1,
        },
        "task": {"name": "mine", "kind": "classification", "chance": 0.1, "n_val": 360},
    }
    return t


def _header(text: str) -> str:
    return re.search(r'<p class="meta">(.*?)</p>', text, re.S).group(1)


def _config_shown(text: str) -> dict:
    shown = re.search(r"<h3>Config of the study</h3>\s*<pre>(.*?)</pre>", text, re.S).group(1)
    return json.loads(html.unescape(shown))


@pytest.mark.parametrize(
    "trainer,says",
    [
        (
            {
                "name": "command",
                "command": "python train.py --lr {lr} --db postgresql://u:pw@h/x",
                "n_val": 360,
                "chance": 0.1,
            },
            "trainer command: python train.py --lr {lr} --db postgresql://u:***@h/x",
        ),
        (
            {
                "_target_": "mytrain.fit",
                "name": "function",
                "n_val": 360,
                "chance": 0.1,
                "source": "ab12",
                "hidden": 32,
                "layers": 1,
            },
            "trainer function mytrain.fit(hidden=32, layers=1)",
        ),
    ],
)
def test_a_users_training_is_described_as_itself_not_as_lrsweeps_model(trainer, says):
    t = _users_study_tables(trainer)
    text = render_html(t, compute_verdicts(t), [])
    header = html.unescape(_header(text))
    assert header.startswith(
        f"{says}; grid axes lr, clip, batch_size; classification, chance 0.100"
    )
    for word in ("lstm", "sgd", "digits", "model", "optimizer", "task "):
        assert word not in header, header
    shown = _config_shown(text)
    assert not {
        "task",
        "model",
        "optimizer",
        "schedule",
        "find",
        "packing",
        "checkpoint_every",
    } & set(shown)
    assert shown["trainer"]["name"] == trainer["name"] and shown["epochs"] == 12
    assert "pw@" not in text and "<h3>Validation set</h3>" in text and "<h3>Task</h3>" not in text
    # lrsweep's own loop: the task, model and optimizer are what trained the runs, and are named
    t.meta["config"]["trainer"] = {"name": "builtin"}
    text = render_html(t, compute_verdicts(t), [])
    assert "model lstm (2 x 64); optimizer sgd" in _header(text)
    assert {"task", "model", "optimizer"} <= set(_config_shown(text))


def test_page_without_runs():
    t = synthetic_tables(lrs=(), clips=(None,))
    text = render_html(t, compute_verdicts(t), [])
    assert "No completed runs yet" in text and "No run collapsed" in text


# --------------------------------------------------------------------------- write_report from a study


def fake_study(name: str = "fake-study"):
    """An in-memory Optuna study holding what workers store: config, task and per-seed records."""
    study = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
    grid = {"lr": [0.1, 1.0], "clip": [None, 1.0], "batch_size": [32]}
    study.set_user_attr(
        ATTR_CONFIG,
        {
            "study": {"name": name, "storage": "sqlite:///x.db"},
            "grid": grid,
            "detect": {
                "drop": 0.5,
                "patience": 3,
                "min_gain": 0.05,
                "spike_factor": 1.5,
                "constant_frac": 0.95,
            },
        },
    )
    study.set_user_attr(ATTR_TASK, {"name": "digits", "kind": "classification", "chance": 0.1})
    rng = np.random.default_rng(0)
    for lr in grid["lr"]:
        for clip in grid["clip"]:
            attrs = {"setting": {"lr": lr, "clip": clip, "batch_size": 32}}
            for seed in range(3):
                rec = synthetic_record(seed, 8, lr, lr * (1.0 if clip is None else 0.3), clip, rng)
                attrs[f"{RUN_PREFIX}{seed}"] = encode_record(types.SimpleNamespace(**rec))
            study.add_trial(optuna.trial.create_trial(values=[0.5, 0.0], user_attrs=attrs))
    return study


def test_write_report_writes_tables_verdicts_figures_and_html(tmp_path):
    paths = write_report(fake_study(), tmp_path)
    out = tmp_path / "fake-study"
    assert (
        list(paths)[:4] == ["runs", "summary", "curves", "verdicts"] and list(paths)[-1] == "report"
    )
    assert paths["report"] == out / "report.html" and paths["verdicts"] == out / "verdicts.csv"
    figures = [k for k in paths if k.startswith("figures/")]
    assert figures == [
        "figures/collapse_rate.png",
        "figures/mean_best_acc.png",
        "figures/lr_curves.png",
        "figures/learning_curves_batch_size-32.png",
        "figures/grad_norms_batch_size-32.png",
    ]
    assert all(p.is_file() for p in paths.values())
    assert paths["runs"].parent == out  # `sweep report` prints this folder
    assert all((out / src).is_file() for src in parse(paths["report"].read_text()).images)
    assert "largest_stable_lr" in paths["verdicts"].read_text().splitlines()[0]


# --------------------------------------------------------------------------- a real browser


def chromium(args: list[str], profile: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_report_renders_in_chromium_and_every_figure_loads(report, tmp_path):
    _, out, path, text = report
    n_images = len(parse(text).images)
    dom = chromium(
        ["--virtual-time-budget=5000", "--dump-dom", path.as_uri()], tmp_path / "profile"
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'id="summary"' in html and "mean_best_acc" in html
    body = re.search(r"<body([^>]*)>", html).group(1)
    assert f'data-images-total="{n_images}"' in body, body
    assert f'data-images-loaded="{n_images}"' in body and 'data-images-ok="true"' in body, body
    assert 'class="missing"' not in html
    assert "<script>alert" not in html


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_chromium_reports_a_missing_figure(report, tmp_path):
    _, out, _, text = report
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    first = parse(text).images[0]
    (broken / first).unlink()
    dom = chromium(
        ["--virtual-time-budget=5000", "--dump-dom", (broken / "report.html").as_uri()],
        tmp_path / "profile",
    )
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    assert 'data-images-ok="false"' in body and 'class="missing"' in dom.stdout


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_summary_table_sorts_by_clicking_a_header(report, tmp_path):
    t, out, path, text = report
    probe = """<script>window.addEventListener('load', function () {
      var ths = Array.prototype.slice.call(document.querySelectorAll('#summary thead th'));
      var col = ths.findIndex(function (h) { return h.textContent === 'mean_best_acc'; });
      ths[col].click(); ths[col].click();  // ascending, then descending
      var rows = document.querySelectorAll('#summary tbody tr');
      document.body.setAttribute('data-first', rows[0].cells[col].textContent);
      document.body.setAttribute('data-last', rows[rows.length - 1].cells[col].textContent);
    });</script></body>"""
    page = tmp_path / "site"
    shutil.copytree(out, page)
    (page / "report.html").write_text(text.replace("</body>", probe), encoding="utf-8")
    dom = chromium(
        ["--virtual-time-budget=5000", "--dump-dom", (page / "report.html").as_uri()],
        tmp_path / "profile",
    )
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    best, worst = t.summary["mean_best_acc"].max(), t.summary["mean_best_acc"].min()
    assert f'data-first="{best:.3f}"' in body and f'data-last="{worst:.3f}"' in body, body


def test_the_verdict_leads_with_the_answer_and_links_every_finding_to_its_figure(report):
    t, _, _, text = report
    v = compute_verdicts(t)
    from html import escape

    assert v.head and text.index(escape(v.head[0].text)) < text.index("Findings") < text.index(
        escape(v.reading)
    )
    anchors = set(re.findall(r'<li>.*?<a href="#([^"]+)">figure</a></li>', text))
    ids = set(re.findall(r'id="([^"]+)"', text))
    assert anchors and anchors <= ids


def test_runs_that_did_not_finish_are_listed_and_absent_without_them():
    t = synthetic_tables(lrs=(0.01, 0.1, 1.0), clips=(None,))
    assert "Runs that did not finish" not in render_html(t, compute_verdicts(t), [])
    runs = t.runs.copy()
    runs.loc[0, "outcome"] = "timed_out"
    runs["failure_reason"] = ""
    runs.loc[0, "failure_reason"] = "killed after 3600 s"
    runs["log_path"] = ""
    runs.loc[0, "log_path"] = "/logs/run0"
    t.runs = runs
    text = render_html(t, compute_verdicts(t), [])
    assert 'id="crashed"' in text and parse(text).tables["unfinished"] == 1
    assert "killed after 3600 s" in text and "/logs/run0" in text
    assert "1 run crashed and is not counted" in text


def test_write_report_writes_the_verdict_as_plain_text(tmp_path):
    paths = write_report(fake_study(), tmp_path)
    verdict = paths["verdict"].read_text()
    assert paths["verdict"] == tmp_path / "fake-study" / "verdict.txt"
    assert verdict.startswith("Verdict for fake-study:\n  ") and "<" not in verdict
    summary = (tmp_path / "fake-study" / "summary.csv").read_text()
    assert not re.search(r"\d\.\d{9,}", summary)  # no float32 artefacts such as 0.8600000023841858
