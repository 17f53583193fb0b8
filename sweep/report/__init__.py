"""Everything under results/<study>/: tables, figures and report.html, rebuilt from the study.

`write` (what `sweep report` does), `figures` (the figure plan and files) drawn by `heatmaps`
and `traces` on `figure_base`, and `html` (the page, from templates/report.html.j2).
"""
