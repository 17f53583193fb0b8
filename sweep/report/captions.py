"""What each figure of report.html shows and how to read it (its caption), and its title."""

# One sentence per figure kind: what it shows and how to read it.
CAPTIONS = {
    "start_curves": (
        "Every run started from the same checkpoint (dotted line: its epoch N). Grey: the original run up to N, "
        "where it is known (a state lrsweep kept, or start.log), and the checkpoint's own score; then one colour "
        "per setting from N+1 on, each seed thin and the median over seeds thick, a collapse's first epoch "
        "dashed. The seeds differ only in what is still random from N on: data order and dropout."
    ),
    "collapse_rate": (
        "Share of seeds that collapsed at each setting (cells: collapsed/runs, one colour scale for all "
        "panels): read a row left to right to see from which lr runs start to collapse, and down a column "
        "to see what clipping changes."
    ),
    "mean_best_acc": (
        "Mean over seeds of each run's best val_acc (mean_best_acc; collapsed runs included) per setting: "
        "brighter is better, and the colour scale is shared so panels compare directly."
    ),
    "mean_best_loss": (
        "Mean over seeds of each run's lowest loss on the curve the calls read (mean_best_loss; collapsed "
        "runs included) per setting: brighter is better (lower), and the colour scale is shared so panels "
        "compare directly."
    ),
    "lr_curves": (
        "Top: mean_best_acc vs lr with its 95% interval as a band, one line per clip value, chance dashed and "
        "the noise floor of the best epoch dash-dotted (mean_best_acc is a best of many epochs: read it against "
        "the floor, not against chance); bottom: collapse_rate with its 95% Wilson interval (its upper end "
        "counts undecided runs as collapsed), so a good lr is where the top curve is high and the bottom "
        "one sits at 0 with a short bar. Dashed: the fitted collapse risk (Firth's penalised logistic fit over log "
        "lr) with its 95% band; ticks at the lr of 10% and 50% risk; a triangle and dotted line at the safe lr, "
        "the largest lr whose risk is below 10% with 95% confidence."
    ),
    "learning_curves": (
        "val_acc (top) and val_loss (bottom, log scale) of every seed per epoch, rows lr and columns clip: "
        "red seeds collapsed (dotted line at the collapse epoch), an x marks where a run went non-finite "
        "and stopped, an orange triangle where val_loss jumped and never came back (a loss jump), the dashed "
        "line is chance and the purple dash-dotted line the noise floor (what the best epoch reaches with "
        "nothing learned at this validation size: a best below it could be luck)."
    ),
    "volatility": (
        "How much the training loss fluctuates, against batch size, one line per lr and one column per clip value. "
        "Top: volatility, the typical epoch-to-epoch jitter of the log training loss after the first 20% of epochs "
        "(0.05 reads 'about 5% per epoch'; mean over seeds with its 95% interval); a steady decrease scores ~0. "
        "Bottom: step_loss_cv, the spread (sd) of the per-step losses within an epoch as a share of the epoch's "
        "mean (median over epochs after warm-up; mean over seeds with its 95% interval): smaller batches give "
        "noisier steps. Lines that rise to the left mean fluctuation "
        "comes from small batches; a rise across lrs at one batch size means it comes from the step size."
    ),
    "grad_norms": (
        "Gradient norm before clipping per epoch (solid grad_norm_mean, dashed grad_norm_max, log scale) "
        "with the clip threshold in green, and beneath it clip_fraction, the share of steps clipped: look "
        "for norms growing before a collapse, and for clip_fraction above 0.5 (clipping too aggressive)."
    ),
    "find": (
        "The learning-rate range test (sweep find): each seed's smoothed training loss while the learning rate "
        "grows exponentially step by step, per clip value; x where the loss diverged, o where it fell fastest; "
        "shaded, the span of the proposed grid (about two decades below the divergence point). It brackets a "
        "grid; it is not the answer: the divergence point moves from run to run."
    ),
    "layer_grad_norms": (
        "The largest gradient norm (before clipping) of each parameter group per epoch, for the collapsed seeds of "
        "this setting, in the epochs before and around the collapse (dotted line): the group whose norm rises first "
        "and furthest is where the blow-up starts. Groups: the embedding, each recurrent layer and the head, or a "
        "custom model's top-level modules."
    ),
    "autopsy": (
        "Why it collapsed: for the collapsed seeds of this slice's lowest collapsing lr (red), every signal from "
        "6 epochs before to 6 after each seed's own collapse epoch (0, dotted), against the seeds of the nearest lr "
        "without a collapse (grey): the gradient norm over its median before the collapse (a cliff jumps x8), the "
        "update/weight ratio, the lr over the critical step size (above 1 the step overshoots), the saturated share "
        "of gates and units, and the top class's share. The legend gives each seed's chain of mechanisms; a dot "
        "marks where its cause began (runs.csv: collapse_chain, collapse_cause, cause_epoch)."
    ),
}
FIGURE_TITLES = {
    "start_curves": "From the checkpoint",
    "collapse_rate": "Collapse rate",
    "mean_best_acc": "Mean best accuracy",
    "mean_best_loss": "Mean best loss",
    "lr_curves": "LR curves",
    "learning_curves": "Learning curves",
    "grad_norms": "Gradient norms",
    "layer_grad_norms": "Gradient norms per layer",
    "find": "Learning-rate range test",
    "volatility": "Loss fluctuation by batch size",
    "autopsy": "Why it collapsed",
}
