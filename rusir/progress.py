"""Progress bars: tqdm, writing a line every few seconds when its output is not a terminal.

In a terminal a bar redraws itself in place; in a log file (CI, a cluster job, `make demo > log`)
every redraw is a new line, and a restore's thousands of steps would fill the log with bars.
So where the stream is not a terminal the bar waits `LOG_INTERVAL` seconds between updates. In a
notebook (tqdm's widget) nothing changes. This module sits at the bottom of the layers.
"""
from __future__ import annotations

import sys

from tqdm import notebook
from tqdm.auto import tqdm

LOG_INTERVAL = 5.0      # seconds between two lines of a bar written to a file or a pipe


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):           # a closed stream
        return False


def progress_bar(*args, **kwargs) -> tqdm:
    """`tqdm(*args, **kwargs)`, with `mininterval=LOG_INTERVAL` unless the output is a terminal
    or a notebook widget (or the caller chose a `mininterval`)."""
    stream = kwargs.get("file") or sys.stderr
    widget = issubclass(tqdm, notebook.tqdm)     # tqdm.auto chose the notebook widget
    if not widget and "mininterval" not in kwargs and not _is_terminal(stream):
        kwargs["mininterval"] = LOG_INTERVAL
    return tqdm(*args, **kwargs)
