"""Helper processes for the cross-process tests."""
