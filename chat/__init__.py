"""chat: a self-hosted real-time chat server on aiohttp."""

__version__ = "0.1.0"
