"""The web edge: pages, accounts, admin, the `/ws` endpoint, middlewares, health and metrics."""
