"""One typed settings object; defaults < user config file < --config file < command-line flags.

The config file only supplies defaults: every key is a field of `Settings`, with the same name.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEEPER_RULES = ("pixels", "format", "size", "date", "path")


class ConfigError(ValueError):
    """A settings value or config file that cannot be used; the message is one line for the user."""


MAX_WORKERS = 1024
"""More processes than any machine has cores for: a larger number overflowed a thread count deep inside."""


@dataclass(frozen=True)
class Settings:
    """Everything that changes what a scan finds. Flows unchanged through every stage."""

    # walk
    include: tuple[str, ...] = ()
    """Glob patterns (on the path relative to its root, or the file name); when set, only matching files are read."""
    exclude: tuple[str, ...] = ()
    """Glob patterns for files or folders to skip, e.g. "*/@eaDir" or "*.tmp"."""
    hidden: bool = False
    """Also look inside hidden files and folders (names starting with a dot)."""
    follow_symlinks: bool = False
    """Follow symbolic links (loop-safe). Off by default: a link is reported, not read."""

    # decode
    max_pixels: int = 150_000_000
    """Images with more pixels than this are reported as problems, not decoded (decompression-bomb guard)."""

    # candidates and verification
    hash_radius: int = 14
    """Largest pHash Hamming distance (of 64 bits) for two images to be compared."""
    dhash_radius: int = 8
    """Largest dHash distance for two images to be compared (a second chance for local edits)."""
    ssim_threshold: float = 0.70
    """Least SSIM of the aligned grayscale thumbnails for two images to count as the same picture."""

    rotations: bool = True
    """Also find copies turned by 90, 180 or 270 degrees (pixels turned, not just an EXIF tag)."""
    mirror: bool = True
    """Also find mirrored (left-right flipped) copies, in any of the four rotations."""
    crops: bool = True
    """Also find crops, by keypoints (ORB) and geometry; costs about a tenth more time."""
    min_crop_area: float = 0.6
    """Least share of a picture that a crop of it must keep to count as the same picture. A crop keeping
    70% measured 0.68-0.70 (the keypoints' fit is that close), so at 0.7 half of a corpus's 70% crops
    were lost; 0.6 leaves that margin under 70%. Overlapping views are refused by the inside test, not
    by area: at 0.6 no benchmark corpus gained a false match."""
    similar: bool = False
    """Also list similar shots (burst frames, overlapping views): reported apart, never proposed for removal."""

    # grouping
    keeper_rules: tuple[str, ...] = KEEPER_RULES
    """Order in which the keeper of a group is chosen; see README."""
    ignore_decisions: bool = False
    """Also report the groups that remembered decisions ("not duplicates", "keep all") suppress."""

    workers: int = 0
    """Worker processes that decode and verify images; 0 means one per CPU core."""

    def __post_init__(self) -> None:
        for name in ("hash_radius", "dhash_radius"):
            if not 0 <= getattr(self, name) <= 32:
                raise ConfigError(f"{name} must be between 0 and 32, not {getattr(self, name)}")
        if not 0.0 < self.ssim_threshold <= 1.0:
            raise ConfigError(f"ssim_threshold must be in (0, 1], not {self.ssim_threshold}")
        if not 0.0 < self.min_crop_area <= 1.0:
            raise ConfigError(f"min_crop_area must be in (0, 1], not {self.min_crop_area}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive, not {self.max_pixels}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers must be 0 (auto) to {MAX_WORKERS}, not {self.workers}")
        unknown = [r for r in self.keeper_rules if r not in KEEPER_RULES]
        if unknown or not self.keeper_rules:
            raise ConfigError(
                f"keeper_rules must be a non-empty list of {', '.join(KEEPER_RULES)}; unknown: {', '.join(unknown)}"
            )

    def replace(self, **changes) -> "Settings":
        """A copy with `changes`; values None are ignored so unset CLI flags fall through."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def effective_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    def as_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


def user_config_path() -> Path:
    """The per-user config file: e.g. ~/.config/dedupe/config.toml on Linux."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("dedupe")) / "config.toml"


def _coerce(name: str, value, default):
    """Check one config value against the type of its default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, not {value!r}")
        return tuple(value)
    raise ConfigError(f"{name}: unsupported value {value!r}")  # pragma: no cover


def read_config_file(path: Path) -> dict:
    """Settings values from a TOML file, checked against the fields of Settings."""
    if os.path.exists(path) and not os.path.isfile(path):  # a pipe would be waited on for ever
        raise ConfigError(f"config file {path} is not a regular file")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, ValueError) as exc:  # TOMLDecodeError, and UnicodeDecodeError for a file not in UTF-8
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    defaults = {f.name: f.default for f in fields(Settings)}
    out = {}
    for key, value in data.items():
        if key not in defaults:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(defaults)})")
        out[key] = _coerce(f"{path}: {key}", value, defaults[key])
    return out


def load_settings(config: Path | None = None, use_user_config: bool = True, **flags) -> Settings:
    """Defaults, then the user config file (if present), then `config`, then `flags` (None = not given)."""
    values: dict = {}
    if use_user_config:
        user = user_config_path()
        if user.is_file():
            values.update(read_config_file(user))
    if config is not None:
        values.update(read_config_file(config))
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return Settings(**values)
    except TypeError as exc:  # pragma: no cover - guarded by read_config_file
        raise ConfigError(str(exc)) from None
