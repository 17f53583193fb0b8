"""What `run_sweep` hands a notebook: a result whose inline view carries its figures, and a
report that travels as one file (report_standalone.html, every figure embedded)."""

from __future__ import annotations

import base64
import re
import shutil

import pytest

import sweep

pytestmark = pytest.mark.slow


def fit(setting, seed, epochs, report):
    for epoch in range(1, epochs + 1):
        acc = min(0.9, 0.2 + 0.2 * epoch + 0.02 * seed) if setting["lr"] < 1 else 0.1
        report(epoch, val_acc=acc, val_loss=1.0 / epoch, train_loss=1.0 / epoch)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    results = tmp_path_factory.mktemp("views") / "results"
    return sweep.run_sweep(
        fit,
        grid={"lr": [0.1, 3.0], "clip": [None], "batch_size": [32]},
        seeds=2,
        epochs=3,
        n_val=100,
        chance=0.1,
        results_dir=str(results),
    )


def _images(page: str) -> list[str]:
    return re.findall(r'<img[^>]* src="([^"]+)"', page) + re.findall(
        r"<img[^>]* src='([^']+)'", page
    )


def _is_png(uri: str) -> bool:
    head = "data:image/png;base64,"
    return uri.startswith(head) and base64.b64decode(uri[len(head) :])[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_standalone_report_needs_no_file_beside_it(result, tmp_path):
    assert result.status == 0 and result.report_standalone is not None
    alone = tmp_path / "elsewhere" / "report.html"
    alone.parent.mkdir()
    shutil.copy(result.report_standalone, alone)  # without its figures/ folder
    page = alone.read_text(encoding="utf-8")
    shown = _images(result.report.read_text(encoding="utf-8"))
    assert shown and all(src.startswith("figures/") for src in shown)  # report.html: files
    embedded = _images(page)
    assert len(embedded) == len(shown) and all(_is_png(src) for src in embedded)
    assert 'href="figures/' not in page and 'src="figures/' not in page


def test_the_inline_view_shows_the_verdict_and_embedded_figures(result):
    view = result._repr_html_()
    images = _images(view)
    assert len(images) == 3 and all(_is_png(src) for src in images)
    assert "src='figures/" not in view and 'src="figures/' not in view
    first_line = result.verdict.strip().splitlines()[0]
    assert first_line.split(":")[0] in view
    assert "<table" in view and "mean_best_acc" in view


def test_a_function_run_in_process_trains_at_the_studys_threads_and_restores_the_callers(
    tmp_path,
):
    """A notebook's function runs at `threads` (as a worker would: torch's default of every core
    crawls on busy cores), and the session's own thread count is back afterwards."""
    import torch

    seen = []

    def fit_seeing_threads(setting, seed, epochs, report):
        seen.append(torch.get_num_threads())
        fit(setting, seed, epochs, report)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sweep.run_sweep(
            fit_seeing_threads,
            grid={"lr": [0.1], "clip": [None], "batch_size": [32]},
            seeds=1,
            epochs=2,
            n_val=100,
            chance=0.1,
            results_dir=str(tmp_path / "results"),
        )
        assert seen == [1]  # the study's threads (default 1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
