"""``python -m close_async``: the ``close-async`` command."""

from ._tools.cli import main

if __name__ == "__main__":
    main(prog_name="close-async")
