"""Notifications: who hears of a stored message, and how (docs/architecture.md)."""
