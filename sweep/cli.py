"""The `sweep` command (and `python -m sweep`):
`sweep {run,worker,report,status,find,refine} [--cfg job] [--config-dir DIR] [--debug] [key=value ...]`.

Exit status: 0 done, 1 failed settings or a bug, 2 a user error, 130 stopped. User errors
(UserError) print one line on stderr, without a traceback (`--debug` or HYDRA_FULL_ERROR=1 shows
it first). Every traceback, a bug's included, goes through the same password redaction as the
one-line errors.
"""

from __future__ import annotations

import os
import sys

from sweep.core.errors import UserError

EXIT_USAGE = 2

HELP = """\
usage: sweep <command> [--cfg job] [--debug] [key=value ...]

lrsweep: learning-rate stability sweeps for recurrent networks. Every setting of a grid
(lr x clip x batch_size) trains several seeds; the Optuna study records every run; the report
says, per setting, the mean best accuracy and the rate of collapse, with intervals.

commands:
  run      queue the grid's missing work, train it with local workers, write results/<study>/
           (the same command resumes a stopped or crashed sweep)
  worker   join a study's sweep (another machine, a Slurm job): like run, without the report
  report   rebuild results/<study>/ (tables, figures, report.html) from the study storage alone
  status   list every study in the storage: settings done / running / failed / remaining
  find     learning-rate range test: propose a grid.lr spanning the edge of stability
           (`sweep run grid.lr=auto` runs it first)
  refine   add learning rates and seeds, in rounds, where they narrow the lr at 10% and 50%
           collapse risk, until it is known within refine.factor or refine.max_runs is spent

options:
  --cfg job             print the composed config and exit
  --config-dir DIR, -cd DIR
                        also read config groups from DIR (your own model/, task/, ... YAML files;
                        they add options to the built-in groups, or replace one of the same name)
  --debug               show tracebacks for errors
  -h, --help            show this help

config groups (pick one with group=NAME, e.g. task=adding):
{groups}
common keys:
  grid.lr='[0.001,0.01,0.1]'  grid.clip='[null,1.0]'  grid.batch_size='[32,128]'
  seeds=5  epochs=40  workers=auto  device=auto  study.name=NAME  study.storage=URL
  results_dir=results  detect.drop=0.5  (every key: docs/configuration.md, or `sweep run --cfg job`)

examples:
  sweep run
  sweep run task=temporal_order model=gru grid.lr='[0.01,0.1,1]' seeds=5 study.name=to-gru
  sweep report study.name=to-gru
  sweep worker study.storage=postgresql://user@db-host/lrsweep study.name=to-gru
"""

COMMANDS = ("run", "worker", "report", "status", "find", "refine")


def _groups_help(config_dir: str | None = None) -> str:
    from sweep.config import GROUPS, group_options

    lines = []
    for g in GROUPS:
        options = group_options(g, config_dir)
        if options:
            lines.append(f"  {g + ':':11} {', '.join(options)}")
    return "\n".join(lines)


def _config_dir(args: list[str]) -> tuple[str | None, list[str]]:
    """(the --config-dir / -cd folder, the other arguments): Hydra's spellings, `-cd DIR`,
    `--config-dir DIR` and `--config-dir=DIR`."""
    folder, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config-dir", "-cd"):
            if i + 1 >= len(args):
                raise UserError(
                    f"{arg}: expected a folder after it, e.g. `sweep run {arg} conf model=mymodel`"
                )
            folder, i = args[i + 1], i + 2
            continue
        if arg.startswith("--config-dir="):
            folder = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return folder, rest


def main(argv: list[str] | None = None) -> None:
    """Run a command and exit with its status (`sweep` and `python -m sweep`).

    A normal exit, not `os._exit`: closing the last SQLite connection folds the write-ahead log
    back into the database file, so a refused command leaves that file byte-identical.
    """
    sys.exit(execute(argv))


EXIT_BUG = 1


def execute(argv: list[str] | None = None) -> int:
    """Run a command; return its exit status (0 ok, 1 failed settings or a bug, 2 user error, 130
    stopped). Whatever it prints about an error, traceback included, has its passwords hidden."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        code = dispatch(argv)
    except UserError as e:
        if debug:
            print_traceback(e)
        print(f"error: {safe_message(e)}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as e:  # a bug: its traceback, redacted (a driver's message may quote the URL)
        print_traceback(e)
        code = EXIT_BUG
    return code


def print_traceback(error: BaseException) -> None:
    """The traceback of `error` on stderr, with every password in it shown as ***."""
    import traceback

    from sweep.core.redact import redact_secrets

    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    print(redact_secrets(text).rstrip(), file=sys.stderr)


def safe_message(error: UserError) -> str:
    """The error's (one-line) message with no password in it, whatever it quotes (e.g. a
    storage URL inside an override that failed to parse)."""
    from sweep.core.redact import redact_secrets

    return redact_secrets(str(error))


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP.format(groups=_groups_help()))
        return 0 if argv else EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise UserError(
            f"unknown command {command!r}; use one of: {', '.join(COMMANDS)} (sweep --help)"
        )
    config_dir, rest = _config_dir(rest)
    if "-h" in rest or "--help" in rest:
        print(HELP.format(groups=_groups_help(config_dir)))
        return 0
    print_cfg = False
    if "--cfg" in rest:
        i = rest.index("--cfg")
        what = rest[i + 1] if i + 1 < len(rest) else ""
        if what not in ("job", "all"):
            raise UserError(
                f"--cfg: expected `--cfg job`, got {what!r}; write `sweep {command} --cfg job [key=value ...]`"
            )
        rest = rest[:i] + rest[i + 2 :]
        print_cfg = True
    bad = [a for a in rest if a.startswith("-")]
    if bad:
        raise UserError(
            f"unknown option {bad[0]!r}; options are --cfg job, --config-dir DIR, --debug, --help"
        )
    not_kv = [a for a in rest if "=" not in a]
    if not_kv:
        raise UserError(f"{not_kv[0]!r}: expected key=value; e.g. seeds=3 or grid.lr='[0.01,0.1]'")

    from sweep.config import compose, config_from_dict, resolve, user_set_keys

    composed = compose(rest, config_dir)
    cfg = config_from_dict(resolve(composed))
    if print_cfg:
        from omegaconf import OmegaConf

        from sweep.core.redact import redact_secrets, redact_url

        if isinstance(composed.study.get("storage"), str):  # never print a password
            composed.study.storage = redact_url(composed.study.storage)
        composed.study.name = cfg.study.name  # the default name, as the sweep will use it
        print(redact_secrets(OmegaConf.to_yaml(composed, resolve=True)), end="")
        return 0
    from sweep.commands import (
        find_command,
        refine_command,
        report_command,
        run_command,
        status_command,
    )

    if command == "find":
        return find_command(cfg)
    if command == "refine":
        return refine_command(cfg)
    if command == "run":
        return run_command(cfg, write_results=True)
    if command == "worker":
        return run_command(cfg, write_results=False, set_keys=user_set_keys(rest))
    if command == "report":
        return report_command(cfg, user_set_keys(rest))
    return status_command(cfg)
