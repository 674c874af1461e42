"""Every figure of the lab, drawn from saved results only; one module per experiment."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def save_figure(fig, path, caption_height: float) -> Path:
    """Lay `fig` out above a caption strip of `caption_height` (figure fraction), save it at
    `path` (folders made; 110 dpi) and close it. Returns the path."""
    fig.tight_layout(rect=(0, caption_height, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
