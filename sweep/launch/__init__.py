"""Running a sweep: the launcher (`sweep run` / `sweep worker`) starts worker processes that claim
trials from the study, train them and store their records; checkpoints make a setting resumable
and the progress line tells how far the sweep is.
"""
