"""Run records: everything needed to reproduce an output, written next to it.

A record holds the resolved config, the template's name/version/hash, the model spec, the seed,
the data checksum, the promptrec version and the git commit. Reading run metadata back never
parses directory names.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import promptrec


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(promptrec.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def template_record(template) -> dict:
    return {"name": template.name, "version": template.version, "sha256": template.sha256, "path": str(template.path)}


def provenance() -> dict:
    return {"promptrec_version": promptrec.__version__, "git_commit": git_commit()}
