"""``python -m embedq.worker.cli``: the ``embedq`` command line (``embedq worker`` spawns workers this way)."""

import sys

from embedq.worker.cli import main

sys.exit(main())
