#!/usr/bin/env python
"""A minimal Django site that uses embedq: a JSON view and a management command, in the app ``tickets``.

``POST /tickets/similar/`` with ``{"text", "candidates"}`` ranks the candidates by similarity to the
text; ``embed_tickets FILE --collection NAME`` puts a file of tickets (one per line) into a
collection and builds its index. Run them while embedq is up (`make run` in another shell), from
the repository root:

    .venv/bin/python examples/django_site/manage.py embed_tickets tickets.txt --collection tickets
    .venv/bin/python examples/django_site/manage.py runserver 8000
    curl -s localhost:8000/tickets/similar/ -H 'content-type: application/json' \\
        -d '{"text": "charged twice", "candidates": ["billed two times", "app crashes"]}'
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "desk.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
