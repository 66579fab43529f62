"""The work itself: pure cores per job kind, the model registry and artifacts."""
