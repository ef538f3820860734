"""Users of the dashboard: the names the demo and the CLI import (see dashboards.auth)."""

from __future__ import annotations

from dashboards.auth import add_user, authenticate, ensure_demo_users, load_users

__all__ = ["add_user", "authenticate", "ensure_demo_users", "load_users"]
