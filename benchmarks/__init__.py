"""Benchmarks: each module ``benchmarks/<name>.py`` has ``main(argv: list[str]) -> None`` that prints a table."""
