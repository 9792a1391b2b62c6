"""Entry point of ``python -m dagfoundry``."""

import sys

from dagfoundry.cli import main

sys.exit(main())
