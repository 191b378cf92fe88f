"""The transport: one request on the wire, with its slots, limits, pacing and retries.

Imports only ``_constants`` and ``_exceptions`` from the rest of the package.
"""
