"""`python -m tms ...`: the `tms` command (tms.cli)."""
import sys

from tms.cli import main

if __name__ == "__main__":
    sys.exit(main())
