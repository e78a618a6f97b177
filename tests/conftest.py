"""Fixtures for the whole suite live in support.py; this file only registers them."""

from support import controller, controller_factory, http

__all__ = ["controller", "controller_factory", "http"]
