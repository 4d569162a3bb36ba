"""`python -m taoflow.emulator MODEL ACTION -e SPEC [KEY=VALUE ...]` — see taoflow/emulator/cli.py."""

import sys

from taoflow.emulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
