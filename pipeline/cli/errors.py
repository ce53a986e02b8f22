"""The CLI's own error, in a module of its own so every verb module raises the same class.

(Defined in main.py it would exist twice under `python -m pipeline.cli.main`: once as
``__main__.UsageError`` and once as ``pipeline.cli.main.UsageError``, and a verb's error would
escape the handler as a traceback.)
"""


class UsageError(Exception):
    """A command-line option names something unusable; the message names the option."""
