"""Everything that is not UI. Nothing in this package may import PySide6 (checked by tests)."""
