"""Live connections of this process: the hub, each connection, write rounds, wire framing.

Knows no broker and no store: what reaches it is handed to it."""
