"""piper-ops library: plain typed functions behind tasks.py and scripts/ (ADR-040)."""
