"""The ADR-040 scripts: thin command-line front ends over services/ (each has `main(argv) -> int`)."""
