"""The command line: one module per command group, each with its --help examples. Nothing imports it."""
