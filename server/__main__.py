"""``python -m coord.server``: same as the ``coord-server`` command."""

import sys

from .main import main

sys.exit(main())
