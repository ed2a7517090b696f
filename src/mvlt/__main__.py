"""``python -m mvlt``: the same as the ``mvlt`` command."""

from .cli import entry

if __name__ == "__main__":
    entry()
