"""content-positioning: shared infrastructure (settings, the local broker, topics, the CLI)."""
