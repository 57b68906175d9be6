"""promptrec: rank items with a LoRA-tuned LLM's yes/no likelihood over Jinja prompt templates."""

__version__ = "0.1.0"
