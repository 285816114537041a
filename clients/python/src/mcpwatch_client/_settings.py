"""Where the agent is and how to authenticate: arguments first, then the environment."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

__all__ = ["DEFAULT_AGENT", "base_url_of", "default_headers"]

#: The agent's default API listener.
DEFAULT_AGENT = "http://127.0.0.1:8700"


def base_url_of(base_url: str | None) -> str:
    """``base_url``, else ``MCPWATCH_AGENT``, else ``http://127.0.0.1:8700``."""
    return (base_url or os.environ.get("MCPWATCH_AGENT") or DEFAULT_AGENT).rstrip("/")


def default_headers(token: str | None) -> dict[str, str]:
    """Headers on every request: the bearer token (``token``, else ``MCPWATCH_TOKEN``) and
    the user agent."""
    token = token if token is not None else os.environ.get("MCPWATCH_TOKEN")
    headers = {"User-Agent": f"mcpwatch-client/{_version()}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _version() -> str:
    try:
        return version("mcpwatch-client")
    except PackageNotFoundError:  # running from a source tree
        return "dev"
