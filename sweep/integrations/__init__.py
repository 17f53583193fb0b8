"""Opt-in callbacks that record lrsweep's collapse signals (issue 26) inside other frameworks'
training loops, into the metrics file the script already writes.

    from sweep.integrations.keras import CollapseSignals        # Keras 3, any backend
    from sweep.integrations.lightning import CollapseSignals    # Lightning 2

Each module imports its framework when it is imported itself; nothing else in lrsweep imports
this package (an import-linter contract in pyproject.toml keeps it so), and `import
sweep.integrations` imports neither framework. For a plain PyTorch loop, `sweep.GradientMonitor`
records the same columns.
"""
