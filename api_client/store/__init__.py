"""The client's SQL, one module per table group (the worker's writes live in ``embedq.worker.store``)."""
