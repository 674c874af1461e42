"""`python -m tms ...`: the `tms` command (tms.cli.main)."""
import sys

from tms.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
