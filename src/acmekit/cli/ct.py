"""`acmekit ct`: run a Certificate Transparency log (RFC 6962). Flags override the TOML
file's keys, which have the flags' names with underscores (`state_dir`, `not_after_start`,
...), at the top level or under `[ct]`."""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from acmekit.cli.errors import plain_errors
from acmekit.cli.main import log_progress_by_default
from acmekit.settings import SettingTypeError, check_type, in_file

MIN_MMD = 0.1  # seconds: the sequencer looks every MMD/10 (at least every 0.05 s)
# seconds, exclusive: `--mmd` takes at most 9 digits before the point, and the file's
# value is held to the same. 1e20 wrote a log list `mmd` past uint64, and 1.8e308
# overflowed the sequencer's milliseconds on every pass: SCTs with no tree growing.
MAX_MMD = 1e9
_KEYS = (
    "listen",
    "state_dir",
    "db",
    "roots",
    "operator",
    "not_after_start",
    "not_after_end",
    "mmd",
    "tls_cert",
    "tls_key",
    "url",
)


def parse_date(text: str, name: str) -> datetime:
    """An RFC 3339 time or a plain date (midnight UTC)."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)", param_hint=name) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _file_settings(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    section = doc.get("ct", doc)
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise click.ClickException(f"{path}: unknown settings: {', '.join(unknown)}")
    try:
        for key, value in section.items():
            _check_type(key, value)
    except SettingTypeError as exc:
        raise click.ClickException(in_file(path, exc)) from None
    return dict(section)


def _check_type(key: str, value: Any) -> None:
    """The file's values get the checks the flags get from click, so a mistake names
    its setting."""
    if key == "mmd":
        check_type(key, value, 60.0, seconds=True)
        # TOML has nan and inf: nan passed `< 0.1`, and inf failed later, in a traceback.
        if not MIN_MMD <= value < math.inf:
            raise SettingTypeError(key, value, "a number of seconds (at least 0.1)")
        if value >= MAX_MMD:
            raise SettingTypeError(key, value, "a number of seconds (at most 9 digits)")
    elif key in ("not_after_start", "not_after_end"):
        check_type(key, value, date.min)
    else:
        check_type(key, value, "")


def _mmd(ctx: click.Context, param: click.Parameter, text: str | None) -> float | None:
    """`--mmd`: seconds as ASCII digits with an optional fraction (`60`, `0.5`), at least
    0.1. Not click's float: float() also takes any script's digits ("\u0663" is 3),
    "1_000", surrounding spaces, "1e3", "nan" (which passed the minimum) and "inf" (a
    traceback later)."""
    if text is None:
        return None
    whole, dot, fraction = text.partition(".")
    digits = whole + fraction
    # at most 9 digits before the point: float() makes inf of a few hundred
    shaped = 0 < len(whole) <= 9 and (fraction or not dot)
    if not (shaped and digits.isascii() and digits.isdigit()):
        raise click.BadParameter(
            f"{text[:40]!r} is not a number of seconds (ASCII digits: 60, 0.5)", ctx, param
        )
    if float(text) < MIN_MMD:
        raise click.BadParameter(f"{text} is less than {MIN_MMD} seconds", ctx, param)
    return float(text)


def _public_url(text: str) -> str:
    """An http(s) URL with a host, ending in "/" as the log list's URLs do."""
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https") or not rest.strip("/"):
        raise click.BadParameter(f"{text!r} is not an http(s) URL", param_hint="--url")
    return text if text.endswith("/") else text + "/"


@click.command("ct")
@click.option("--listen", default=None, help="HOST:PORT for HTTP [127.0.0.1:6962]")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="log state [ct]")
@click.option("--db", default=None, help="database URL (sqlite:///F or postgresql://...)")
@click.option(
    "--roots",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PEM bundle of accepted roots [STATE_DIR/roots.pem]",
)
@click.option("--operator", default=None, help="operator name in the log list [unique]")
@click.option("--not-after-start", default=None, help="shard: earliest notAfter accepted")
@click.option("--not-after-end", default=None, help="shard: notAfter must be before this")
@click.option("--mmd", default=None, callback=_mmd, help="max merge delay, s [60]")
@click.option(
    "--url",
    default=None,
    help="the log's URL for clients (log list, checkpoint origin) [the listener's]",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PEM certificate chain: serve HTTPS (with --tls-key)",
)
@click.option(
    "--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None, help="its PEM key"
)
@click.option(
    "--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
def ct(config_file: Path | None, **flags: Any) -> None:
    """Run a Certificate Transparency log (RFC 6962, with C2SP static-ct-api reads)."""
    from acmekit.ct.service import CtConfig, run

    merged = _file_settings(config_file)
    merged.update({k: v for k, v in flags.items() if v is not None})
    start, end = merged.get("not_after_start"), merged.get("not_after_end")
    if (start is None) != (end is None):
        raise click.UsageError("--not-after-start and --not-after-end go together")
    config = CtConfig(
        state_dir=Path(merged.get("state_dir", "ct")),
        listen=str(merged.get("listen", "127.0.0.1:6962")),
        db=merged.get("db"),
        roots=Path(merged["roots"]) if merged.get("roots") else None,
        operator=merged.get("operator"),
        not_after_start=parse_date(str(start), "--not-after-start") if start else None,
        not_after_end=parse_date(str(end), "--not-after-end") if end else None,
        mmd=float(merged.get("mmd", 60.0)),
        tls_cert=Path(merged["tls_cert"]) if merged.get("tls_cert") else None,
        tls_key=Path(merged["tls_key"]) if merged.get("tls_key") else None,
        url=_public_url(merged["url"]) if merged.get("url") else None,
    )
    if config.state_dir.exists() and not config.state_dir.is_dir():
        raise click.ClickException(f"--state-dir {config.state_dir} is not a directory")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    start_at, end_at = config.not_after_start, config.not_after_end
    if start_at and end_at and start_at >= end_at:
        raise click.UsageError("--not-after-start must be before --not-after-end")
    log_progress_by_default()
    try:
        with plain_errors({"--listen": config.listen}, config.db_url):
            run(config)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
