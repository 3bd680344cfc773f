"""Console operators and the sign-in throttle in SQL (core.ports.OperatorRepository). What an
operator may do, and when a sign-in is refused, is decided in core.operators."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.ports import OperatorView, Throttle
from storage.models import OperatorRow, SignInThrottleRow


def _view(row: OperatorRow) -> OperatorView:
    return OperatorView(id=row.id, email=row.email, name=row.name, role=row.role,
                        password_hash=row.password_hash, created_at=row.created_at,
                        last_sign_in_at=row.last_sign_in_at, disabled=bool(row.disabled))


class SqlOperatorRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_email(self, email: str) -> OperatorView | None:
        row = self.session.scalars(select(OperatorRow).where(OperatorRow.email == email)).first()
        return _view(row) if row is not None else None

    def get(self, operator_id: int) -> OperatorView | None:
        row = self.session.get(OperatorRow, operator_id)
        return _view(row) if row is not None else None

    def all(self) -> list[OperatorView]:
        return [_view(r) for r in self.session.scalars(select(OperatorRow).order_by(OperatorRow.id))]

    def count(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(OperatorRow)) or 0)

    def add(self, *, email: str, name: str, password_hash: str, role: str,
            now: datetime) -> OperatorView:
        row = OperatorRow(email=email, name=name, password_hash=password_hash, role=role,
                          created_at=now, disabled=False)
        self.session.add(row)
        self.session.flush()
        return _view(row)

    def set_password(self, operator_id: int, password_hash: str) -> None:
        self.session.execute(update(OperatorRow).where(OperatorRow.id == operator_id)
                             .values(password_hash=password_hash))

    def set_disabled(self, operator_id: int, disabled: bool) -> None:
        self.session.execute(update(OperatorRow).where(OperatorRow.id == operator_id)
                             .values(disabled=disabled))

    def signed_in(self, operator_id: int, now: datetime) -> None:
        self.session.execute(update(OperatorRow).where(OperatorRow.id == operator_id)
                             .values(last_sign_in_at=now))

    def throttle(self, key: str) -> Throttle | None:
        row = self.session.get(SignInThrottleRow, key)
        if row is None:
            return None
        return Throttle(row.failures, row.window_start, row.locked_until)

    def save_throttle(self, key: str, throttle: Throttle | None) -> None:
        if throttle is None:
            self.session.execute(delete(SignInThrottleRow).where(SignInThrottleRow.key == key))
            return
        row = self.session.get(SignInThrottleRow, key)
        if row is None:
            self.session.add(SignInThrottleRow(key=key, failures=throttle.failures,
                                               window_start=throttle.window_start,
                                               locked_until=throttle.locked_until))
        else:
            row.failures = throttle.failures
            row.window_start = throttle.window_start
            row.locked_until = throttle.locked_until
        self.session.flush()
