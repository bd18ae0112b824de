"""Rule Atlas: one catalog of public detection rules, taken apart into what they really check."""

__version__ = "0.1.0"
