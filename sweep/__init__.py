"""lrsweep: learning-rate stability sweeps for recurrent networks.

Data flow, one package per stage (README "Architecture"):
config -> tasks (data) -> training (seeds of one setting) -> store (Optuna study) ->
analysis (detection, statistics, verdicts) -> report (tables, figures, report.html);
run (launcher and workers) and commands/cli on top, core (shared vocabulary) beneath.
"""

__version__ = "0.1.0"
