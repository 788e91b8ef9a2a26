"""The library's version, kept in one place for setup.cfg and saved model files."""

__version__ = "0.1.0"
