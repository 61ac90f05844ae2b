"""How a published frame reaches every node, and who is online where: in-process or Redis."""
