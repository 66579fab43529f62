"""All SQL of embedq, one module per table group; used by the client and the worker alike."""
