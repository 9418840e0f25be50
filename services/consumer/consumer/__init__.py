"""streampair consumer service."""
