"""Parsers for ``rocm-smi --json`` and ``rocminfo`` output (AMD's, and Hygon's variant of both)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from gpustack_core.accelerators import output_error, parse_bytes, parse_number

__all__ = ["ROCM_SMI_ARGS", "RocmAgent", "RocmInfo", "SmiCard", "parse_rocm_smi", "parse_rocminfo"]

#: the rocm-smi query whose JSON output the fixtures record
ROCM_SMI_ARGS = [
    "-i",
    "--showmeminfo",
    "vram",
    "--showpower",
    "--showserial",
    "--showuse",
    "--showtemp",
    "--showproductname",
    "--showuniqueid",
    "--json",
]

_CARD = re.compile(r"^card(\d+)$")
_VRAM = re.compile(r"^vram total (used )?memory \((b|mib)\)$", re.IGNORECASE)
_USE = re.compile(r"^(gpu|dcu|hcu) use \(%\)$", re.IGNORECASE)
_AGENT = re.compile(r"^\*+\s*\nAgent \d+\s*\n\*+\s*$", re.MULTILINE)
_KEY = re.compile(r"^\s*([A-Za-z][A-Za-z .()]*?):\s*(.*?)\s*$")
_NUMBER_PREFIX = re.compile(r"^(\d+)")


@dataclass(frozen=True)
class SmiCard:
    """One ``cardN`` entry of ``rocm-smi --json``."""

    card: int
    unique_id: str | None
    name: str | None
    vendor: str | None
    total: int
    used: int | None
    utilization: float | None
    temperature: float | None
    serial: str | None
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def is_hygon(self) -> bool:
        """A Hygon DCU (Hygon's rocm-smi reports ``DCU use``/``HCU use`` and its vendor name)."""
        vendor = (self.vendor or "").lower()
        return (
            "haiguang" in vendor or "hygon" in vendor or any(_USE.match(k) and k[0] in "DH" for k in self.raw)
        )


@dataclass(frozen=True)
class RocmAgent:
    """One GPU/DCU agent of ``rocminfo``."""

    position: int
    uuid: str
    name: str
    marketing_name: str | None
    compute_units: int | None


@dataclass(frozen=True)
class RocmInfo:
    """``rocminfo``: the kernel driver's version, the HSA runtime's, and the GPU agents in order."""

    driver_version: str | None
    runtime_version: str | None
    agents: list[RocmAgent]


def _clean(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return None if text in ("", "N/A") else text


def parse_rocm_smi(text: str, accelerator: str, tool: str = "rocm-smi") -> list[SmiCard]:
    """Cards from ``rocm-smi ... --json``; memory in bytes whatever unit the variant prints."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise output_error(
            accelerator, tool, f"not JSON ({exc.msg} at line {exc.lineno})", text[:120]
        ) from None
    if not isinstance(data, dict):
        raise output_error(accelerator, tool, "top level is not a JSON object", text[:120])
    cards: list[SmiCard] = []
    for key, info in data.items():
        match = _CARD.match(key)
        if match is None:
            continue  # "system" and other non-card sections
        if not isinstance(info, dict):
            raise output_error(accelerator, tool, f"{key} is not an object")
        raw = {str(k): str(v) for k, v in info.items()}
        total = used = None
        for k, v in raw.items():
            vram = _VRAM.match(k.strip())
            if vram is None or _clean(v) is None:
                continue
            try:
                size = parse_bytes(v, "MiB" if vram[2].lower() == "mib" else "B")
            except ValueError:
                raise output_error(accelerator, tool, f"{key}: {k!r} is not a size", v) from None
            if vram[1]:
                used = size
            else:
                total = size
        if total is None:
            raise output_error(
                accelerator, tool, f"{key} has no 'VRAM Total Memory' entry (run with --showmeminfo vram)"
            )
        use = next((v for k, v in raw.items() if _USE.match(k.strip())), None)
        temp = raw.get("Temperature (Sensor edge) (C)") or raw.get("Temperature (Sensor junction) (C)")
        unique = _clean(raw.get("Unique ID"))
        cards.append(
            SmiCard(
                card=int(match[1]),
                unique_id=unique.removeprefix("0x").lower() if unique else None,
                name=_clean(raw.get("Device Name")) or _clean(raw.get("Card Series")),
                vendor=_clean(raw.get("Card Vendor")),
                total=total,
                used=None if used is None else min(used, total),
                utilization=parse_number(use) if use else None,
                temperature=parse_number(temp) if temp else None,
                serial=_clean(raw.get("Serial Number")),
                raw=raw,
            )
        )
    return sorted(cards, key=lambda c: c.card)


def parse_rocminfo(text: str, accelerator: str) -> RocmInfo:
    """GPU and DCU agents of ``rocminfo``, in the order the HSA runtime enumerates them."""
    first = text.splitlines()[0] if text.strip() else ""
    version = re.search(r"module version (\S+)", first)
    runtime = re.search(r"^\s*Runtime Version:\s*(\S+)", text, re.MULTILINE)
    blocks = _AGENT.split(text)
    if len(blocks) < 2:
        raise output_error(accelerator, "rocminfo", "no 'Agent N' sections", text[:120])
    agents: list[RocmAgent] = []
    for block in blocks[1:]:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            match = _KEY.match(line)
            if match and match[1] not in fields:
                fields[match[1]] = match[2]
        if fields.get("Device Type", "").upper() not in ("GPU", "DCU"):
            continue
        uuid, name = fields.get("Uuid"), fields.get("Name")
        if not uuid or not name:
            raise output_error(accelerator, "rocminfo", "a GPU agent without Uuid or Name", block[:120])
        cu = _NUMBER_PREFIX.match(fields.get("Compute Unit", ""))
        agents.append(
            RocmAgent(
                position=len(agents),
                uuid=uuid,
                name=name,
                marketing_name=_clean(fields.get("Marketing Name")),
                compute_units=int(cu[1]) if cu else None,
            )
        )
    return RocmInfo(version[1] if version else None, runtime[1] if runtime else None, agents)
