"""The generator's version: recorded in every row, and the package version (pyproject reads it)."""

__version__ = "3.1.0"
