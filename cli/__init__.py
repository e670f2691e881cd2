"""The `positioning` command: one click group that runs each component, the local stack and the tools."""
