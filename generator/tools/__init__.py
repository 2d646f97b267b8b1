"""Tools on top of ``core`` and ``runtime``: validation, Hub staging and upload, statistics, the
Ray runner, the library API and the command line. Nothing in ``core`` or ``runtime`` imports them.
"""
