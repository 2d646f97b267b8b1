"""Processes: where rows are made (this process, a shard server, a device server) and the one child protocol.

``runtime`` imports ``core``; nothing in ``core`` imports ``runtime``.
"""
