"""streampair producer service."""
