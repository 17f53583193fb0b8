"""The ground floor: the vocabulary every layer shares, without torch.

`errors` (UserError), `setting` (one grid setting: identity and label), `records` (a run's record
and its stored form), `redact` (passwords hidden), `files` (atomic writes), `values` (absent and
NaN-safe helpers), `devices` (device strings and worker plans).
"""
