"""``python -m tbx``: the ``tbx`` command line (see tbx/cli.py)."""

import sys

from tbx.cli import main

if __name__ == "__main__":
    sys.exit(main())
