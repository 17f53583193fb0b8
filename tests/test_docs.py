"""The README's and the manual's promises about themselves: every `sweep` command they show is one
the CLI accepts, and every relative link points at a file that exists.

Each command of a bash block in README.md and docs/*.md is split as the shell would (shlex:
quotes, `\\` line continuations, comments, `&&`), with `cd`, variable assignments (`URL=...`,
also as a prefix) and `$VAR` substitutions followed; an unknown variable stands for a
PostgreSQL URL. It is then composed in-process through `--cfg job` (`sweep.cli.execute`, here `exit_status`), which
checks every key without training or writing anything, and must exit 0. A `--config-dir` folder
that does not exist in the repository is the user's project the page shows (`myproj/conf`): such a
command is composed in tests/docs_project/, a project with the model, the loader and the YAML
files that README.md and docs/your-code.md show, and there it must also pass every check `sweep
run` makes before it opens the storage (the model builds and fits the data the loader returns).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sweep.cli import COMMANDS
from sweep.cli import execute as exit_status  # a command line's exit status, in-process

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "tests" / "docs_project"  # the user's project the docs show (myproj/)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
# What an unknown shell variable stands for: the docs use $URL, "$LRSWEEP_DB_URL" for a database.
UNKNOWN_VARIABLE = "postgresql://lrsweep:secret@db-host/lrsweep"
SEPARATORS = ("&&", "||", ";", "|", "&")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    argv: tuple[str, ...]  # after `sweep` (or `python -m sweep`)
    cwd: Path
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


# --------------------------------------------------------------------------- reading the pages


def shell_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, body) of every fenced block marked as shell code."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(2), m.group(3).lower(), i + 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        if lang in SHELL_BLOCKS:
            yield start + 1, "\n".join(body)


def logical_lines(body: str, first: int) -> Iterator[tuple[int, str]]:
    """(line number, text) with backslash continuations joined."""
    pending, start = "", first
    for n, line in enumerate(body.splitlines(), start=first):
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def expand(text: str, env: dict[str, str]) -> str:
    """`$VAR` and `${VAR}` replaced as a shell would: not inside single quotes."""
    out, i, single, double = [], 0, False, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and not single and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            continue
        if ch == "'" and not double:
            single = not single
        elif ch == '"' and not single:
            double = not double
        elif ch == "$" and not single:
            m = re.match(r"\$(?:\{(\w+)\}|(\w+))", text[i:])
            if m:
                name = m.group(1) or m.group(2)
                out.append(env.get(name, UNKNOWN_VARIABLE))
                i += m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_commands(text: str) -> list[list[str]]:
    """Shell words of each simple command of a line (comments dropped)."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    commands, words = [], []
    for token in lex:
        if token in SEPARATORS:
            commands.append(words)
            words = []
        else:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def is_assignment(word: str) -> bool:
    name, sep, _ = word.partition("=")
    return bool(sep) and name.isidentifier()


def sweep_argv(words: list[str]) -> list[str] | None:
    """The arguments after `sweep` / `python -m sweep`, or None for another program."""
    if words[:1] == ["sweep"]:
        return words[1:]
    if (
        len(words) >= 3
        and Path(words[0]).name.startswith("python")
        and words[1:3] == ["-m", "sweep"]
    ):
        return words[3:]
    return None


def commands_of(page: Path, text: str | None = None) -> list[Command]:
    """Every sweep command in the shell blocks of a page."""
    text = page.read_text(encoding="utf-8") if text is None else text
    name = page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name
    found = []
    for first, body in shell_blocks(text):
        env: dict[str, str] = {}
        cwd = ROOT
        for n, line in logical_lines(body, first):
            for words in split_commands(expand(line, env)):
                while words and is_assignment(words[0]):  # URL=... alone, or as a prefix
                    key, _, value = words.pop(0).partition("=")
                    env[key] = value
                if not words:
                    continue
                if words[0] == "cd":
                    cwd = (cwd / words[1]) if len(words) > 1 else ROOT
                    continue
                argv = sweep_argv(words)
                if argv is not None:
                    found.append(Command(name, n, tuple(argv), cwd, " ".join(words)))
    return found


# --------------------------------------------------------------------------- composing a command


def config_dir_of(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config-dir="):
            return arg.split("=", 1)[1]
    return None


def working_folder(command: Command) -> Path:
    """Where the command runs: its `cd`, or tests/docs_project/ for a user's project folder that
    the repository does not have (README's and docs/your-code.md's `--config-dir conf`)."""
    folder = config_dir_of(list(command.argv))
    if folder is None or (command.cwd / folder).is_dir():
        return command.cwd
    return PROJECT


def composed_argv(command: Command) -> list[str]:
    """The command as `--cfg job` composes it: --config-dir made absolute from where it runs."""
    argv = list(command.argv)
    folder = config_dir_of(argv)
    if folder is not None:
        path = str((working_folder(command) / folder).resolve())
        argv = [
            path if a == folder else a.replace(f"--config-dir={folder}", f"--config-dir={path}")
            for a in argv
        ]
    if argv and argv[0] in COMMANDS and "--cfg" not in argv and not {"-h", "--help"} & set(argv):
        argv.append("--cfg")
        argv.append("job")
    return argv


def compose(command: Command) -> tuple[int, str]:
    """(exit status, stderr) of the command composed in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = exit_status(composed_argv(command))
    return code, err.getvalue()


ALL_COMMANDS = [c for page in PAGES for c in commands_of(page)]
PROJECT_COMMANDS = [c for c in ALL_COMMANDS if working_folder(c) == PROJECT]


def test_the_docs_show_sweep_commands():
    pages = {c.page for c in ALL_COMMANDS}
    assert "README.md" in pages and len(pages) >= 8, pages
    assert len(ALL_COMMANDS) >= 30  # the extractor finds them (not a quota)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=str)
def test_every_documented_command_composes(command):
    code, err = compose(command)
    assert code == 0, f"{command}\n  -> exit {code}: {err.strip()}"


def test_the_headline_project_commands_are_composed_in_the_docs_project():
    """README's and docs/your-code.md's `sweep run --config-dir conf model=tagger task=sensors`."""
    assert {c.page for c in PROJECT_COMMANDS} == {"README.md", "docs/your-code.md"}
    assert all("model=tagger" in c.argv and "task=sensors" in c.argv for c in PROJECT_COMMANDS)


def test_the_docs_project_is_the_one_the_page_shows():
    """tests/docs_project/ holds docs/your-code.md's mynets.py and YAML files as the page shows
    them (the loader, which the page does not show, is the project's own)."""
    page = (ROOT / "docs" / "your-code.md").read_text(encoding="utf-8")
    blocks = [body for _, body in re.findall(r"```(\w*)\n(.*?)```", page, flags=re.S)]
    for name in ("mynets.py", "conf/model/tagger.yaml", "conf/task/sensors.yaml"):
        assert (PROJECT / name).read_text() in blocks, name


@pytest.mark.slow
@pytest.mark.parametrize("command", PROJECT_COMMANDS, ids=str)
def test_the_headline_project_commands_pass_every_check_before_the_storage(command, tmp_path):
    """In the project folder (a fresh interpreter: the project's modules stay out of this one),
    the composed config passes what `sweep run` checks before it opens the storage: the loader
    runs, the arrays are valid, the model imports, builds and returns scores of the right shape."""
    import subprocess
    import sys

    argv = [a for a in composed_argv(command) if a not in ("--cfg", "job")]
    folder = argv[argv.index("--config-dir") + 1]
    overrides = [a for a in argv[1:] if "=" in a] + [f"results_dir={tmp_path / 'results'}"]
    script = (
        "import sys\n"
        "from sweep.config import load_config\n"
        "from sweep.launch.preparation import checked_task\n"
        f"task = checked_task(load_config({overrides!r}, {folder!r}))\n"
        "print('checked', task.n_train, task.output_dim)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["checked", "3750", "3"]  # 5000 sequences, val_fraction 0.25
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the checker itself


BROKEN_PAGE = """
```bash
sweep run epoch=3                       # a typo: the CLI refuses it
```
"""


def test_a_broken_example_fails_the_check():
    (command,) = commands_of(ROOT / "broken.md", BROKEN_PAGE)
    code, err = compose(command)
    assert code == 2 and "epoch: unknown config key" in err


def test_the_shell_is_read_as_a_shell_would():
    page = """
```bash
URL=postgresql://u:pw@db/lrsweep
cd examples/two_groups && sweep run --config-dir conf model=twopart \\
    grid.lr='[0.1,1]' study.storage=$URL   # a comment
HYDRA_FULL_ERROR=1 python -m sweep report "study.name='a b'" study.storage="$OTHER"
pip install -e . && sweep status
echo 'sweep run $URL' ; sbatch job.sh
```
"""
    found = commands_of(ROOT / "x.md", page)
    assert [c.argv for c in found] == [
        (
            "run",
            "--config-dir",
            "conf",
            "model=twopart",
            "grid.lr=[0.1,1]",
            "study.storage=postgresql://u:pw@db/lrsweep",
        ),
        ("report", "study.name='a b'", f"study.storage={UNKNOWN_VARIABLE}"),
        ("status",),
    ]
    assert found[0].cwd == ROOT / "examples" / "two_groups" and found[0].line == 4
    assert composed_argv(found[0])[2] == str(ROOT / "examples" / "two_groups" / "conf")


# --------------------------------------------------------------------------- links


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"[`*_]", "", heading).strip()
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(
        r"^```.*?^```", "", text, flags=re.S | re.M
    )  # headings in code blocks are not headings
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}


def links(page: Path) -> Iterator[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    for m in LINK.finditer(text):
        yield m.group(1)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file_that_exists(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(
                f"{target} (no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file})"
            )
        elif file.exists() and anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading '#{anchor}' in {file.name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


# --------------------------------------------------------------------------- what `--cfg job` checks

# docs/troubleshooting.md: mistakes `--cfg job` lets through (it builds no data and reads no code
# or file) and `sweep run` refuses before anything is written.
COMMAND = "trainer=command trainer.n_val=40 trainer.chance=0.25 trainer.command="
NOT_CHECKED_BY_CFG_JOB = {  # mistake: (overrides, how `sweep run`'s one line starts)
    "batch larger than the data": (["grid.batch_size=[5000]"], "grid.batch_size: every batch"),
    "missing task.path": (["task=file", "task.path=/no/such/file.npz"], "task.path: file "),
    "unknown placeholder": (
        (COMMAND + "python train.py --lr {lrr} --log {metrics}").split(" ", 3),
        "trainer.command: unknown placeholder {lrr}",
    ),
    "missing script": (
        (COMMAND + "python train.py --lr {lr} --log {metrics}").split(" ", 3),
        "trainer.command: the script train.py does not exist",
    ),
    "group_lr_mult count": (["optimizer.group_lr_mult=[1.0,2.0]"], "optimizer.group_lr_mult: 2"),
}
TINY = ["grid.lr=[0.1]", "grid.clip=[null]", "seeds=1", "epochs=1", "workers=1"]


@pytest.mark.parametrize("mistake", NOT_CHECKED_BY_CFG_JOB)
def test_cfg_job_lets_through_what_the_troubleshooting_page_says(mistake, tmp_path, monkeypatch):
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert "`sweep run --cfg job` composes the config" in page and "exits 0 for mistakes" in page
    monkeypatch.chdir(tmp_path)  # no train.py here
    mistaken, refusal = NOT_CHECKED_BY_CFG_JOB[mistake]
    overrides = [*mistaken, *TINY, f"results_dir={tmp_path / 'results'}"]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert exit_status(["run", "--cfg", "job", *overrides]) == 0, err.getvalue()
        assert exit_status(["run", *overrides]) == 2
    assert err.getvalue().startswith(f"error: {refusal}") and err.getvalue().count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


# --------------------------------------------------------------------------- what a study compares


def test_a_user_trainings_study_compares_what_configuration_md_says():
    """docs/configuration.md ("What a study compares"): with a training command, the command,
    `epochs` and `threads` fix what results mean; the run's time limits, the analysis keys and
    the execution keys do not."""
    from sweep.config import comparable_part, load_config

    base = [
        "trainer=command",
        "trainer.command=python train.py --lr {lr} --clip {clip} --log {metrics}",
        "trainer.n_val=40",
        "trainer.chance=0.25",
    ]

    def part(*extra: str) -> dict:
        return comparable_part(load_config([*base, *extra]))

    same = part()
    for changed in ("epochs=7", "threads=2", "trainer.n_val=41", "trainer.chance=0.3"):
        assert part(changed) != same, changed
    for free in (
        "trainer.timeout_minutes=5",
        "trainer.stop_grace_seconds=3",
        "trainer.metric=loss",
        "trainer.chance_loss=1.5",
        "workers=3",
        "seeds=9",
        "grid.lr=[0.5]",
    ):
        assert part(free) == same, free
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = page[page.index("## What a study compares") :]
    own = section[section.index("with your own training") : section.index("Grid\naxes")]
    assert "`epochs`" in own and "`threads`" in own
