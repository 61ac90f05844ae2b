"""The process around the app: workers, TLS, logging, GC tuning, periodic upkeep."""
