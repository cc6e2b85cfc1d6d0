"""``python -m iopv`` = the ``iopv`` command."""

import sys

from iopv.cli import main

sys.exit(main())
