"""Parser for the summary table ``mx-smi`` prints when run without arguments (mx-smi 2.1 and 2.2).

The table, per GPU, as MetaX's tool prints it::

    | MX-SMI 2.2.4                        Kernel Mode Driver Version: 2.15.9          |
    | MACA Version: 2.32.0.6              BIOS Version: 1.25.1.0                      |
    ...
    | 0           MetaX C550             | 0000:0f:00.0        | 0%                   |
    | 29C         53W / 450W             | 858/65536 MiB       | Available            |

A process table follows; it is not read. The number of rows must match the ``Attached GPUs`` line,
so cut or mangled output is an error rather than fewer devices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpustack_core.accelerators import output_error, parse_number

__all__ = ["MxSmiCard", "MxSmiReport", "parse_mx_smi"]

TOOL = "mx-smi"

_ATTACHED = re.compile(r"^Attached GPUs\s*:\s*(\d+)\s*$", re.MULTILINE)
_DRIVER = re.compile(r"Kernel Mode Driver Version:\s*(\S+)")
_MACA = re.compile(r"MACA Version:\s*(\S+)")
_BIOS = re.compile(r"BIOS Version:\s*(\S+)")
_BUS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_FIRST = re.compile(r"^(\d+)\s+(\S.*?)$")
_MEMORY = re.compile(r"^(\d+)\s*/\s*(\d+)\s*MiB$")
_TEMP = re.compile(r"^(-?\d+(?:\.\d+)?)C\b")


@dataclass(frozen=True)
class MxSmiCard:
    """One GPU row pair of the table."""

    index: int
    name: str
    bus_id: str
    utilization: float | None
    temperature: float | None
    memory_used: int
    memory_total: int
    state: str | None


@dataclass(frozen=True)
class MxSmiReport:
    """The whole table: versions from its header and the GPU rows in order."""

    driver_version: str | None
    maca_version: str | None
    bios_version: str | None
    cards: list[MxSmiCard]


def _cells(line: str) -> list[str] | None:
    """The three cells of a ``| a | b | c |`` row, or None for any other line."""
    if not (line.startswith("|") and line.rstrip().endswith("|")):
        return None
    cells = [c.strip() for c in line.strip()[1:-1].split("|")]
    return cells if len(cells) == 3 else None


def _known(value: str | None) -> str | None:
    return None if value is None or value.lower() in ("unknown", "n/a", "na") else value


def parse_mx_smi(text: str, accelerator: str) -> MxSmiReport:
    """The GPUs of ``mx-smi``'s summary table, with memory in bytes.

    Raises:
        AcceleratorOutputError: no ``Attached GPUs`` line, a GPU row that cannot be read, or a
            number of rows different from ``Attached GPUs``.
    """
    attached = _ATTACHED.search(text)
    if attached is None:
        raise output_error(accelerator, TOOL, "no 'Attached GPUs' line", text[:120])
    body = text.split("| Process:", 1)[0]
    lines = body.splitlines()
    cards: list[MxSmiCard] = []
    for number, line in enumerate(lines):
        first = _cells(line)
        if first is None or not _BUS.match(first[1]):
            continue
        head = _FIRST.match(first[0])
        second = _cells(lines[number + 1]) if number + 1 < len(lines) else None
        if head is None or second is None:
            raise output_error(accelerator, TOOL, "a GPU row without index, name or second line", line)
        memory = _MEMORY.match(second[1])
        if memory is None:
            raise output_error(accelerator, TOOL, f"GPU {head[1]}: memory is not 'used/total MiB'", second[1])
        temperature = _TEMP.match(second[0])
        used, total = int(memory[1]) * 2**20, int(memory[2]) * 2**20
        cards.append(
            MxSmiCard(
                index=int(head[1]),
                name=head[2],
                bus_id=first[1].lower(),
                utilization=parse_number(first[2]) if first[2] else None,
                temperature=float(temperature[1]) if temperature else None,
                memory_used=min(used, total),
                memory_total=total,
                state=second[2] or None,
            )
        )
    if len(cards) != int(attached[1]):
        raise output_error(
            accelerator, TOOL, f"'Attached GPUs' says {attached[1]} but {len(cards)} GPU rows were read"
        )
    driver, maca, bios = _DRIVER.search(text), _MACA.search(text), _BIOS.search(text)
    return MxSmiReport(
        driver_version=_known(driver[1]) if driver else None,
        maca_version=_known(maca[1]) if maca else None,
        bios_version=_known(bios[1]) if bios else None,
        cards=sorted(cards, key=lambda c: c.index),
    )
