"""Errors, configuration, file I/O and run records: what every other layer stands on."""
