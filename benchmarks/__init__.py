"""Benchmarks. Each module ``benchmarks/<name>.py`` has ``main(argv: list[str]) -> None`` printing a table."""
