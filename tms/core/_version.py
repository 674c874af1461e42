"""The package version: one source, read by tms.__version__, pyproject and every result's provenance."""
__version__ = "0.1.0"
