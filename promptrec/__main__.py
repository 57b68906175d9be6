"""`python -m promptrec` (and `accelerate launch -m promptrec`) run the CLI."""

import sys

from promptrec.cli.main import main

sys.exit(main())
