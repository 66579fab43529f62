"""``python -m worker.cli``: the ``embedq`` command line (``embedq worker`` spawns workers this way)."""

import sys

from worker.cli import main

sys.exit(main())
