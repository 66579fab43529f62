"""The worker side's SQL: claim, lease, progress, finish, release, sweeper queries and output writes.

Keyword-only functions on an explicit autocommit connection, as in
``api_client.store`` (which holds the client's own queries).
"""
