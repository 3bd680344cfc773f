"""The CLI's part of the audit trail (core/audit.py): every command leaves an event
(`audited_command`), and `flask --app app audit export | verify` read the trail.

A command's event is written when it ends, with its outcome: ok, failed (the command refused:
bad input, a usage error) or error (it crashed); a long-running command (the scheduler) also
writes one when it starts. The actor is the operating system's user who ran it.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, TypeVar

import click
from flask.cli import AppGroup

from core.audit import AuditEvent, Outcome, pseudonym, verify
from web.http import runtime

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def cli_actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"cli:uid {os.getuid()}"


def record(action: str, object_type: str, object_id: str, outcome: Outcome,
           **detail: str | int | None) -> None:
    """Write one CLI event; a database without the trail (not migrated yet) is said on stderr,
    not raised: the command's own result stands."""
    rt = runtime()
    try:
        rt.audit.append(AuditEvent(at=rt.now(), actor=cli_actor(), source="cli", action=action,
                                   object_type=object_type, object_id=object_id,
                                   outcome=outcome,
                                   detail={**detail, "config": rt.config_fingerprint}))
    except Exception as exc:  # noqa: BLE001 - e.g. `db current` on an empty database
        log.warning("audit event not written: %s %s (%s)", action, outcome, type(exc).__name__)
        click.echo(f"audit: this command was not recorded ({type(exc).__name__}); is the "
                   f"schema migrated?", err=True)


def note(**detail: str | int | None) -> None:
    """Counts the running command learned, for its event (an erasure's)."""
    click.get_current_context().meta.setdefault("audit_detail", {}).update(detail)


def _noted() -> dict[str, str | int | None]:
    context = click.get_current_context(silent=True)
    return dict(context.meta.get("audit_detail", {})) if context else {}


def audited_command(action: str, object_type: str = "service",
                    object_of: Callable[[dict[str, Any]], str] | None = None, *,
                    at_start: bool = False) -> Callable[[F], F]:
    """Record the command's event when it ends (and, `at_start`, when it starts). `object_of`
    names the object from the command's parameters."""
    def mark(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            object_id = object_of(kwargs) if object_of else "-"
            if at_start:
                record(action, object_type, object_id, Outcome.OK, phase="start")
            try:
                result = command(*args, **kwargs)
            except (click.ClickException, click.Abort) as exc:
                record(action, object_type, object_id, Outcome.FAILED,
                       reason=type(exc).__name__)
                raise
            except SystemExit as exc:
                record(action, object_type, object_id,
                       Outcome.OK if not exc.code else Outcome.FAILED, exit=str(exc.code))
                raise
            except BaseException as exc:  # KeyboardInterrupt ends the scheduler: a stop
                stopped = isinstance(exc, KeyboardInterrupt)
                record(action, object_type, object_id, Outcome.OK if stopped else Outcome.ERROR,
                       reason=type(exc).__name__)
                raise
            record(action, object_type, object_id, Outcome.OK,
                   **({"phase": "end"} if at_start else {}), **_noted())
            return result
        run.audited = action  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]
    return mark


def not_audited_command(reason: str) -> Callable[[F], F]:
    def mark(command: F) -> F:
        command.not_audited = reason  # type: ignore[attr-defined]
        return command
    return mark


# --- audit export / verify ----------------------------------------------------------------------

def _when(value: str | None, *, end: bool) -> datetime | None:
    """A --from/--to value: a date (its start; for --to the end of that day: --to is inclusive)
    or an ISO time (UTC unless it says)."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected YYYY-MM-DD or an ISO 8601 time") \
                from None
        return at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    start = datetime.combine(day, time(), tzinfo=timezone.utc)
    return start + timedelta(days=1) if end else start


@click.group("audit", cls=AppGroup, help="The audit trail: who read or changed what.")
def audit_cli() -> None:
    pass


@audit_cli.command("export", help="Write the audit events as JSON lines on stdout, oldest first "
                                  "(each with its object's id and the chain's hashes).")
@click.option("--from", "start", metavar="DATE", help="From this day (YYYY-MM-DD) or time.")
@click.option("--to", "end", metavar="DATE", help="To this day, inclusive, or before this time.")
@click.option("--contact", metavar="ID", help="Only events about this contact (by its id, "
                                              "which the trail keeps as a pseudonym).")
@audited_command("audit.export", "audit_trail")
def audit_export(start: str | None, end: str | None, contact: str | None) -> None:
    rt = runtime()
    rt.prepare_database()
    begin, finish = _when(start, end=False), _when(end, end=True)
    wanted = pseudonym(contact) if contact else None
    count = 0
    for stored in rt.audit.events(begin, finish):
        if wanted is not None and stored.event.object_id != wanted:
            continue
        click.echo(json.dumps(stored.json(), ensure_ascii=False, separators=(",", ":")))
        count += 1
    click.echo(f"exported {count} events", err=True)


@audit_cli.command("verify", help="Check the audit trail's hash chain: no event missing, none "
                                  "changed. Exits 1 at the first break.")
@click.option("--anchor", metavar="SEQ:HASH",
              help="A hash kept elsewhere from an earlier verify: it must still be there.")
@audited_command("audit.verify", "audit_trail")
def audit_verify(anchor: str | None) -> None:
    rt = runtime()
    rt.prepare_database()
    with click.progressbar(rt.audit.events(), label="verifying the audit trail",
                           file=sys.stderr) as events:
        result = verify(events)
    if not result.intact:
        raise click.ClickException(f"the audit trail is broken at event {result.broken_at}: "
                                   f"{result.reason} ({result.events} events read)")
    if anchor:
        seq, _, digest = anchor.partition(":")
        found = next((e for e in rt.audit.events(after_seq=int(seq) - 1) if e.seq == int(seq)),
                     None) if seq.isdigit() else None
        if found is None or found.hash != digest:
            raise click.ClickException(f"the anchor {anchor} is not in the trail: it was "
                                       f"rewritten, or the anchor is wrong")
    last = result.events
    click.echo(f"{last} events, chain intact; last hash {result.last_hash}"
               + (f" (anchor {anchor} found)" if anchor else "")
               + ". Keep the last hash elsewhere: a later `audit verify --anchor "
                 f"{last}:{result.last_hash}` proves nothing before it was rewritten.")
