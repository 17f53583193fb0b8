"""Analysis: pure functions from run records to tables, verdicts and statistics (no torch).

`detection` (a run's collapse call) with `noise` (sampling noise of an accuracy) and `stats`
(intervals); `tables` (runs, curves, summary); `verdicts` (per slice, the recommendation, the
validation set's resolution) and `reading` (the verdict paragraph).
"""
