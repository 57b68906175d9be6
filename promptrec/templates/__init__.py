"""Prompt templates: load, lint and render (the shipped files live in the top-level prompts/)."""
