"""User-facing errors. Each one names the thing that is wrong and how to fix it.

Library code raises these; only the CLI turns them into one line on stderr and exit code 2.
Programming errors (bugs) stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations


class PromptrecError(Exception):
    """A user mistake (bad file, unknown id, template typo, impossible config)."""


class DataError(PromptrecError):
    """A data file is missing, unreadable, or lacks a required column."""


class TemplateError(PromptrecError):
    """A prompt template is malformed, or a render lacks one of its inputs."""


class ConfigError(PromptrecError):
    """A configuration key or value is unknown or impossible."""


class ModelError(PromptrecError):
    """A model, tokenizer or adapter cannot be loaded or does not fit the request."""


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
