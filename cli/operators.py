"""`flask --app app operators ...`: the people who sign in to the operator console
(core.operators). Passwords are asked for (hidden, twice) or, with --generate, made and
printed once; they are never logged or put in the audit trail."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from cli.audit import audited_command
from core import operators
from core.audit import pseudonym
from core.errors import DomainError
from web.http import runtime
from web.passwords import WerkzeugHasher, generate_password


@click.group("operators", cls=AppGroup, help="Operators of the console: who may sign in.")
def operators_cli() -> None:
    pass


def _show_once(password: str, made: bool) -> None:
    """A generated password, printed this once (a typed one is never echoed)."""
    if made:
        click.echo(f"password: {password}   (shown once: keep it now)")


def _password(generate: bool) -> tuple[str, bool]:
    if generate:
        return generate_password(), True
    return click.prompt("Password", hide_input=True, confirmation_prompt=True), False


def _operator(kw: dict) -> str:
    return pseudonym(str(kw["email"]).strip().lower())


@operators_cli.command("create", help="Make an operator: admin (may act) or csm (reads only).")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(operators.ROLES), default="admin", show_default=True)
@click.option("--generate", is_flag=True, help="Generate a password and print it, once.")
@audited_command("operators.create", "operator", _operator)
def operators_create(email: str, name: str, role: str, generate: bool) -> None:
    rt = runtime()
    rt.prepare_database()
    password, made = _password(generate)
    try:
        operator = operators.create_operator(rt.uow(), WerkzeugHasher(), email=email, name=name,
                                             role=role, password=password, now=rt.now())
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"operator {operator.email} ({operator.role}) created")
    _show_once(password, made)


@operators_cli.command("list", help="List the operators: email, name, role, last sign-in.")
@audited_command("operators.list", "operators")
def operators_list() -> None:
    rt = runtime()
    rt.prepare_database()
    for o in operators.list_operators(rt.uow(read_only=True)):
        last = o.last_sign_in_at.strftime("%Y-%m-%d %H:%M UTC") if o.last_sign_in_at else "never"
        click.echo(f"{o.email}\t{o.name}\t{o.role}\t{'disabled' if o.disabled else 'active'}"
                   f"\tlast sign-in: {last}")


@operators_cli.command("reset-password", help="Give an operator a new password (their open "
                                              "sessions end; failed sign-ins are forgotten).")
@click.option("--email", required=True)
@click.option("--generate", is_flag=True, help="Generate a password and print it, once.")
@audited_command("operators.reset_password", "operator", _operator)
def operators_reset_password(email: str, generate: bool) -> None:
    rt = runtime()
    rt.prepare_database()
    password, made = _password(generate)
    try:
        operator = operators.reset_password(rt.uow(), WerkzeugHasher(), email, password)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"operator {operator.email}: password changed")
    _show_once(password, made)


@operators_cli.command("disable", help="Disable an operator: no sign-in; signed out at once.")
@click.option("--email", required=True)
@audited_command("operators.disable", "operator", _operator)
def operators_disable(email: str) -> None:
    rt = runtime()
    rt.prepare_database()
    try:
        operator = operators.set_disabled(rt.uow(), email, True)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"operator {operator.email}: disabled")
