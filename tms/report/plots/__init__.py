"""Every figure of the lab, drawn from saved results only; one module per experiment."""
import matplotlib

matplotlib.use("Agg")
