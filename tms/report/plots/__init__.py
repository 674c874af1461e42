"""Every figure of the lab, drawn from saved results only; one module per experiment.

matplotlib is imported at the first figure (pyplot()), not with the package: its import costs
most of a second, which the commands and reused stages that draw nothing should not pay."""
import sys
from pathlib import Path


def pyplot():
    """matplotlib.pyplot, on the Agg backend (files only) unless pyplot was imported before
    with a backend of the caller's choosing (a notebook's `%matplotlib inline`)."""
    import matplotlib  # here only (module docstring)

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, caption_height: float) -> Path:
    """Lay `fig` out above a caption strip of `caption_height` (figure fraction), save it at
    `path` (folders made; 110 dpi) and close it. Returns the path."""
    fig.tight_layout(rect=(0, caption_height, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
