"""``python -m evojax_cma``: the command line of `evojax_cma.cli`."""

import sys

from evojax_cma.cli import main

sys.exit(main())
