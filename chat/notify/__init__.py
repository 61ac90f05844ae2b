"""Notifications: who hears about a stored message, and how.

See docs/architecture.md, "Notifications".
"""
