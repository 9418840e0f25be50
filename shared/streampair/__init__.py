"""streampair: a stream client and service runtime for Apache Pulsar and Macrometa GDN."""

__version__ = "0.1.0"
