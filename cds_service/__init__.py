"""CDS Hooks 2.0 service: imaging after treatment of a major salivary gland cancer."""

__version__ = "0.1.0"
