"""lrsweep: learning-rate stability sweeps for recurrent networks.

Data flow (one module per stage):
config -> tasks (data) -> training (seeds of one setting) -> study (Optuna storage) ->
analysis (tables, detection, statistics) -> plots / report.
"""

__version__ = "0.1.0"
