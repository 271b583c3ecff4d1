"""Stage 8: the reports. JSON is the machine contract (versioned schema); HTML is what a person reads."""


def human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as file managers show sizes)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover
