import io

from sweep.launch.status_line import StatusLine
from sweep.store.counts import StudyCounts


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_line_shows_done_running_collapsed_and_eta():
    p = StatusLine(stream=io.StringIO())
    p.line(StudyCounts(total=10, done=0))  # first snapshot: nothing finished in this session yet
    line = p.line(StudyCounts(total=10, done=4, running=2, complete_runs=20, collapsed_runs=3))
    assert "4/10 settings done" in line and "2 running" in line and "3/20 runs collapsed" in line
    assert "ETA" in line and "ETA ?" not in line


def test_eta_unknown_before_any_setting_finishes():
    p = StatusLine(stream=io.StringIO())
    assert "ETA ?" in p.line(StudyCounts(total=5, done=0, running=1))


def test_terminal_redraws_one_line_in_place():
    out = FakeTTY()
    p = StatusLine(stream=out)
    p.update(StudyCounts(total=3, done=0, running=1))
    p.update(StudyCounts(total=3, done=1, running=1))
    p.finish(StudyCounts(total=3, done=3))
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1


def test_log_mode_prints_lines_when_settings_finish_not_every_poll():
    out = io.StringIO()
    p = StatusLine(stream=out, log_every=60.0)
    for _ in range(5):
        p.update(StudyCounts(total=3, done=0, running=1))  # polls without news: one line only
    assert out.getvalue().count("\n") == 1
    p.last_line -= 10  # as if 10 s had passed
    p.update(StudyCounts(total=3, done=1, running=1))
    p.finish(StudyCounts(total=3, done=3))
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert "3/3 settings done" in lines[-1]
