"""Operating the running system: dead-letter tooling and the one status view."""
