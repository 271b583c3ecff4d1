"""Settings and their sources: defaults < user config < --config < flags."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from dedupe.config import KEEPER_RULES, ConfigError, Settings, load_settings, read_config_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    path = tmp_path / "user" / "config.toml"
    path.parent.mkdir()
    monkeypatch.setattr("dedupe.config.user_config_path", lambda: path)
    return path


def test_defaults():
    s = load_settings()
    assert s == Settings()
    assert s.keeper_rules == KEEPER_RULES
    assert s.hidden is False and s.follow_symlinks is False
    assert 0 < s.ssim_threshold <= 1 and 0 <= s.hash_radius <= 32


def test_precedence(tmp_path, user_config):
    user_config.write_text('hash_radius = 10\nssim_threshold = 0.8\nhidden = true\nexclude = ["*.tmp"]\n')
    cfg = tmp_path / "project.toml"
    cfg.write_text("hash_radius = 12\nworkers = 3\n")

    s = load_settings()
    assert (s.hash_radius, s.ssim_threshold, s.hidden, s.exclude) == (10, 0.8, True, ("*.tmp",))

    s = load_settings(cfg)
    assert (s.hash_radius, s.workers, s.ssim_threshold, s.hidden) == (12, 3, 0.8, True)

    s = load_settings(cfg, hash_radius=9, hidden=False, workers=None, ssim_threshold=None)
    assert (s.hash_radius, s.hidden, s.workers, s.ssim_threshold) == (9, False, 3, 0.8)

    s = load_settings(cfg, use_user_config=False)
    assert (s.hash_radius, s.ssim_threshold, s.hidden) == (12, Settings().ssim_threshold, False)


def test_missing_user_config_is_fine(user_config):
    assert not user_config.exists()
    assert load_settings() == Settings()


def test_int_accepted_for_float(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("ssim_threshold = 1\n")
    s = load_settings(cfg)
    assert s.ssim_threshold == 1.0 and isinstance(s.ssim_threshold, float)


def test_lists_become_tuples(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('include = ["*.jpg", "*.png"]\nkeeper_rules = ["path", "pixels"]\n')
    s = load_settings(cfg)
    assert s.include == ("*.jpg", "*.png") and s.keeper_rules == ("path", "pixels")
    hash(s)  # still a frozen, hashable settings object


def test_unknown_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("hash_raduis = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'hash_raduis'"):
        load_settings(cfg)


def test_unknown_key_in_user_config(user_config):
    user_config.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings()


@pytest.mark.parametrize(
    "line",
    [
        'hash_radius = "ten"',
        "hash_radius = 3.5",
        "hash_radius = true",
        "hidden = 1",
        'hidden = "yes"',
        'ssim_threshold = "high"',
        "ssim_threshold = false",
        'exclude = "*.tmp"',
        "exclude = [1, 2]",
        "keeper_rules = 5",
        "max_pixels = [1]",
    ],
)
def test_wrong_type(tmp_path, line):
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "\n" not in str(err.value)
    assert line.split()[0] in str(err.value)


@pytest.mark.parametrize(
    "line,match",
    [
        ("hash_radius = 40", "hash_radius"),
        ("hash_radius = -1", "hash_radius"),
        ("dhash_radius = 33", "dhash_radius"),
        ("ssim_threshold = 0", "ssim_threshold"),
        ("ssim_threshold = 1.5", "ssim_threshold"),
        ("max_pixels = 0", "max_pixels"),
        ("workers = -2", "workers"),
        ('keeper_rules = ["pixels", "beauty"]', "beauty"),
        ("keeper_rules = []", "keeper_rules"),
    ],
)
def test_bad_value(tmp_path, line, match):
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n")
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg)


def test_bad_flag_value():
    with pytest.raises(ConfigError, match="hash_radius"):
        load_settings(hash_radius=99)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("hash_radius = = 3\n")
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(bad)


def test_settings_helpers():
    s = Settings(workers=2)
    assert s.replace(hash_radius=None, workers=None) == s
    assert s.replace(hash_radius=3).hash_radius == 3
    assert s.effective_workers == 2
    assert Settings(workers=0).effective_workers >= 1
    d = Settings(include=("*.jpg",)).as_dict()
    assert d["include"] == ["*.jpg"] and d["keeper_rules"] == list(KEEPER_RULES)
    assert set(d) == {f.name for f in dataclasses.fields(Settings)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 3  # type: ignore[misc]


def _example() -> dict:
    example = REPO / "config.example.toml"
    if not example.exists():
        pytest.skip("config.example.toml not present (yet)")
    with open(example, "rb") as fh:
        return tomllib.load(fh)


def test_config_example_parses_and_has_only_settings():
    data = _example()
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert set(data) <= fields, f"keys that are not settings: {sorted(set(data) - fields)}"
    assert load_settings(REPO / "config.example.toml", use_user_config=False) is not None  # valid types/values


def test_config_example_values_are_the_defaults():
    """The example says 'the values shown are the defaults'."""
    defaults = Settings().as_dict()
    data = _example()
    assert {k: v for k, v in data.items() if k in defaults and v != defaults[k]} == {}


def test_config_example_has_every_setting():
    data = _example()
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields <= set(data), f"settings missing from the example: {sorted(fields - set(data))}"
