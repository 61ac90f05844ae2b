"""Notifications: who hears about a stored message, and how (docs/architecture.md, "Notifications")."""
