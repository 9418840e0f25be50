"""streampair broker service."""
