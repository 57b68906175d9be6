"""Evaluation protocols: TALLRec, next-item, search; prepared splits, shots and candidate files."""
