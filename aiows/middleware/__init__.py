"""Middleware: ``BaseMiddleware`` and the built-ins."""

from __future__ import annotations

from .auth import AuthMiddleware
from .base import BaseMiddleware
from .logging import LoggingMiddleware
from .rate_limit import RateLimitingMiddleware

__all__ = ["AuthMiddleware", "BaseMiddleware", "LoggingMiddleware", "RateLimitingMiddleware"]
