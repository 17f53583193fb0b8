"""A user's module with a mistake that shows only when it is imported (tests/test_bad_inputs.py,
tests/test_custom_code.py): lrsweep must say so in one line, naming the module and the error."""


def fit(setting, report):
    pass


WIDTH = undefined_width * 2  # noqa: F821  (the mistake: a NameError at import)
