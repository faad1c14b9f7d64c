"""``python -m agentsight``: the ``agentsight`` command, for when the script is off PATH."""

import sys

from agentsight.cli import main

if __name__ == "__main__":
    sys.exit(main())
