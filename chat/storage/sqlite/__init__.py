"""What only SQLite needs: the group commit of messages and the fast reads, on plain sqlite3."""
