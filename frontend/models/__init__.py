"""The model zoo (filled in below)."""
