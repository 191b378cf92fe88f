"""The fake Close server behind ``close_async.testing``; it imports nothing else of the SDK, so
that an SDK bug cannot hide behind shared code."""
