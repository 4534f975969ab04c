"""Fixtures for the image/audio tests: see tests/support/mm_fixtures.py."""

from tests.support.mm_fixtures import attach, load_engine, projectors, store, tiny_model

__all__ = ["attach", "load_engine", "projectors", "store", "tiny_model"]
