"""embedq's service: the worker runtime (``embedq.worker``), the pure cores of every job kind
(``embedq.cores``) and the schema's migrations (``embedq.migrations``).

The light client that web backends import is ``api_client``; this package comes with it, and its
heavy dependencies with the ``worker`` extra (``pip install 'embedq[worker]'``).
"""
