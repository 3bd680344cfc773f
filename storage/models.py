"""SQLAlchemy 2 tables. Alembic migrations under storage/migrations create them; tests check the
migrations and these models agree."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import (BigInteger, Date, DateTime, ForeignKey, Index, Integer, MetaData, Numeric,
                        String)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite has no BIGINT autoincrement; INTEGER PRIMARY KEY is its 64-bit rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on SQLite (naive text) and PostgreSQL (timestamptz) alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(50))
    vertical: Mapped[str] = mapped_column(String(50))
    timezone: Mapped[str] = mapped_column(String(64))
    billing_day: Mapped[int] = mapped_column(Integer)
    plan_since: Mapped[datetime] = mapped_column(UTCDateTime)
    csat: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))  # core.accounts.HEALTH_PLACES
    sentiment: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))
    open_escalations: Mapped[int] = mapped_column(Integer, default=0)
    health_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    contacts: Mapped[list[ContactRow]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="ContactRow.position")


class ContactRow(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    whatsapp: Mapped[str | None] = mapped_column(String(20), index=True)
    web_user_id: Mapped[str | None] = mapped_column(String(200), index=True)
    email: Mapped[str | None] = mapped_column(String(320))

    account: Mapped[AccountRow] = relationship(back_populates="contacts")


class UsageEventRow(Base):
    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_account_at", "account_id", "at"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageDailyRow(Base):
    """Per account, metric and UTC day: the sum and the highest value, and the day's last reading.

    Kept in step with usage_events by the same transaction, so that a usage matrix reads at most
    31 rows per metric instead of every event in the window (bench/ingest.py shows why).
    """

    __tablename__ = "usage_daily"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)
    max_quantity: Mapped[int] = mapped_column(BigInteger)
    last_quantity: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageGaugeRow(Base):
    """The latest reading of each gauge (seats, integrations) per account, by event time."""

    __tablename__ = "usage_gauges"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ThresholdStateRow(Base):
    """A threshold an account is at-or-above now (a row per key): what makes them edge-triggered."""

    __tablename__ = "threshold_states"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SignalRow(Base):
    """A threshold crossing: metric, value, threshold, when it happened and when we saw it."""

    __tablename__ = "signals"
    __table_args__ = (Index("ix_signals_account_detected", "account_id", "detected_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str] = mapped_column(String(4))
    from_plan: Mapped[str] = mapped_column(String(50))
    to_plan: Mapped[str] = mapped_column(String(50))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[Decimal] = mapped_column(Numeric(20, 2))  # a 30-day sum of up to 10**12 each
    threshold: Mapped[Decimal] = mapped_column(Numeric(20, 2))
    crossed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[str | None] = mapped_column(String(200))
