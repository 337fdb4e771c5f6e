"""sitemesh: AI agents across on-prem sites and the cloud, on NATS JetStream."""

__version__ = "0.1.0"
