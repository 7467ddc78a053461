"""MkDocs hook: links from a docs page to files of the repository outside ``docs/``.

The pages link to source files (``../planner/context.py``) so that they read well
on GitHub and in an editor; on the site those files do not exist.  This hook
rewrites each such link before MkDocs validates links (``--strict`` fails on a
broken one):

- ``../README.md`` goes to the site's home page (getting started is the README's);
- with ``extra.source_url`` set in ``mkdocs.yml`` (e.g.
  ``https://github.com/OWNER/planner/blob/main/``), other files link there;
- without it, the link becomes its text followed by the path in code.

A link to a file that does not exist in the repository is left alone, so the
strict build still reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite the page's links that leave ``docs/`` (see the module docstring)."""
    docs_dir = Path(config["docs_dir"]).resolve()
    root = docs_dir.parent
    page_dir = posixpath.dirname(page.file.src_uri)
    source_url = (config.get("extra") or {}).get("source_url")

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if "://" in target or target.startswith(("/", "mailto:")):
            return match[0]
        resolved = (docs_dir / page_dir / target).resolve()
        if resolved.is_relative_to(docs_dir) or not resolved.is_relative_to(root):
            return match[0]
        if not resolved.exists():
            return match[0]  # broken: let MkDocs report it
        path = resolved.relative_to(root).as_posix()
        if path == "README.md":
            home = posixpath.relpath("index.md", page_dir or ".")
            return f"[{match['text']}]({home})"
        if source_url:
            return f"[{match['text']}]({source_url.rstrip('/')}/{path}{match['anchor'] or ''})"
        text = match["text"]
        return text if path in text else f"{text} (`{path}`)"

    return _LINK.sub(rewrite, markdown)
