"""Reference Gateway agent: holds the push stream to the Worker and applies resources to files + a reload."""

__version__ = "0.1.0"
