"""Names derived from Plane data: work-item ids and git-safe branch names."""

from __future__ import annotations

import re
import unicodedata

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
MAX_SLUG = 40


def work_item_id(prefix: str, sequence_id: int | None, issue_id: str) -> str:
    """`ORCH-12`; without a sequence number, the first 8 characters of the issue id."""
    return f"{prefix}-{sequence_id}" if sequence_id is not None else f"{prefix}-{issue_id[:8]}"


def slugify(title: str, max_len: int = MAX_SLUG) -> str:
    """Lowercase ASCII words joined by '-': safe in any git ref and any shell."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_title.lower()).strip("-")
    return slug[:max_len].rstrip("-")


def branch_name(work_item: str, title: str) -> str:
    slug = slugify(title)
    return f"feature/{work_item}-{slug}" if slug else f"feature/{work_item}"
