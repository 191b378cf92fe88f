"""The opportunity resource: its request and response models, codec and ``Opportunities``."""
