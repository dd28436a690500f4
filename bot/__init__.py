"""imglife: container image lifecycle as a webhook bot and a CLI."""

__version__ = "0.1.0"
