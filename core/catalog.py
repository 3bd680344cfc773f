"""The catalog: plans, prices, features, thresholds and vertical framing, parsed and validated.

Parsing is pure (text in, `Catalog` out); reading the file is the caller's job. Every problem is a
`CatalogError` that names the file, the key and what was expected, so a bad edit stops start-up
with a message an operator can act on.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from core.errors import CatalogError, DomainError
from core.money import decimal_places

BASE_METRICS = ("messages", "seats", "integrations")
ANY_FEATURE = "feature:*"


@dataclass(frozen=True)
class Plan:
    """A price plan: base price, what is included, the overage prices and the features."""

    name: str
    rank: int
    base_price: Decimal
    included_messages: int
    extra_message_price: Decimal
    included_seats: int
    extra_seat_price: Decimal
    max_integrations: int | None  # None: unlimited
    features: frozenset[str]

    def integrations_allowed(self, n: int) -> bool:
        return self.max_integrations is None or n <= self.max_integrations


@dataclass(frozen=True)
class Threshold:
    """A usage level on `from_plan` that maps to value on `to_plan` (edge-triggered)."""

    from_plan: str
    to_plan: str
    metric: str  # messages | seats | integrations | feature:<name> | feature:*
    at: int

    @property
    def key(self) -> str:
        return f"{self.from_plan}->{self.to_plan}:{self.metric}>={self.at}"


@dataclass(frozen=True)
class DownTierRule:
    enabled: bool = True
    min_days_on_plan: int = 30


@dataclass(frozen=True)
class Vertical:
    """The words one industry uses for the same numbers."""

    name: str
    label: str
    message: str
    messages: str
    seat: str
    seats: str
    integrations: str
    hipaa: bool = False
    feature_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    plans: Mapping[str, Plan]  # in rank order, lowest first
    features: Mapping[str, str]  # feature name -> how a buyer reads it
    thresholds: tuple[Threshold, ...]
    downtier: DownTierRule
    verticals: Mapping[str, Vertical]

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            raise DomainError(f"unknown plan {name!r}; known: {', '.join(self.plans)}",
                              code="unknown_plan") from None

    def vertical(self, name: str) -> Vertical:
        try:
            return self.verticals[name]
        except KeyError:
            raise DomainError(f"unknown vertical {name!r}; known: {', '.join(self.verticals)}",
                              code="unknown_vertical") from None

    def check_metric(self, metric: str) -> None:
        """Raise `DomainError(unknown_metric)` unless `metric` is one the usage matrix tracks."""
        if metric in BASE_METRICS:
            return
        if metric.startswith("feature:") and metric[len("feature:"):] in self.features:
            return
        raise DomainError(
            f"unknown metric {metric!r}; expected messages, seats, integrations or "
            f"feature:<name> with name one of {', '.join(self.features)}", code="unknown_metric")

    def below(self, plan: Plan) -> Plan | None:
        """The next plan down, or None at the bottom."""
        lower = [p for p in self.plans.values() if p.rank < plan.rank]
        return lower[-1] if lower else None

    def feature_name(self, feature: str, vertical: Vertical | None = None) -> str:
        if vertical and feature in vertical.feature_names:
            return vertical.feature_names[feature]
        return self.features.get(feature, feature)


def parse_catalog(text: str, source: str = "catalog.toml") -> Catalog:
    """Parse and validate catalog TOML; raise `CatalogError` naming `source`, key and expectation."""
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(source, "(file)", f"valid TOML ({exc})") from None
    return _Parser(source).catalog(raw)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str, got: object = None) -> CatalogError:
        return CatalogError(self.source, key, expected, got)

    def table(self, raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = raw.get(key)
        if not isinstance(value, dict) or not value:
            raise self.fail(path, "a non-empty table", value)
        return value

    def no_extra(self, raw: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in raw:
            if key not in allowed:
                prefix = f"{path}." if path else ""
                raise self.fail(f"{prefix}{key}", f"no such key (allowed: {', '.join(sorted(allowed))})")

    def integer(self, raw: Mapping[str, Any], key: str, path: str, minimum: int = 0) -> int:
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{path}.{key}", f"a whole number >= {minimum}", value)
        return value

    def money(self, raw: Mapping[str, Any], key: str, path: str, places: int) -> Decimal:
        value = raw.get(key)
        if isinstance(value, (int, str, Decimal)) and not isinstance(value, bool):
            try:
                amount = Decimal(str(value))
            except ArithmeticError:
                amount = None
            if (amount is not None and amount.is_finite() and amount >= 0
                    and decimal_places(amount) <= places):
                return amount
        raise self.fail(f"{path}.{key}",
                        f"an amount in dollars >= 0 with at most {places} decimals", value)

    def text(self, raw: Mapping[str, Any], key: str, path: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{path}.{key}", "a non-empty string", value)
        return value

    def catalog(self, raw: Mapping[str, Any]) -> Catalog:
        self.no_extra(raw, {"plans", "features", "thresholds", "downtier", "verticals"}, "")
        features = self.features(self.table(raw, "features", "features"))
        plans = self.plans(self.table(raw, "plans", "plans"), features)
        thresholds = self.thresholds(raw.get("thresholds", []), plans, features)
        downtier = self.downtier(raw.get("downtier", {}))
        verticals = self.verticals(self.table(raw, "verticals", "verticals"), features)
        return Catalog(plans=plans, features=features, thresholds=thresholds,
                       downtier=downtier, verticals=verticals)

    def features(self, raw: Mapping[str, Any]) -> dict[str, str]:
        return {name: self.text(raw, name, "features") for name in raw}

    def plans(self, raw: Mapping[str, Any], features: Mapping[str, str]) -> dict[str, Plan]:
        plans = []
        allowed = {"rank", "base_price", "included_messages", "extra_message_price",
                   "included_seats", "extra_seat_price", "max_integrations", "features"}
        for name, body in raw.items():
            path = f"plans.{name}"
            if not isinstance(body, dict):
                raise self.fail(path, "a table", body)
            self.no_extra(body, allowed, path)
            max_int = body.get("max_integrations")
            if max_int == "unlimited":
                max_integrations = None
            else:
                max_integrations = self.integer(body, "max_integrations", path)
            feats = body.get("features")
            if (not isinstance(feats, list) or not all(isinstance(f, str) for f in feats)):
                raise self.fail(f"{path}.features", "a list of feature names", feats)
            for f in feats:
                if f not in features:
                    raise self.fail(f"{path}.features",
                                    f"feature names from [features] ({', '.join(features)})", f)
            plans.append(Plan(
                name=name,
                rank=self.integer(body, "rank", path, minimum=1),
                base_price=self.money(body, "base_price", path, places=2),
                included_messages=self.integer(body, "included_messages", path),
                extra_message_price=self.money(body, "extra_message_price", path, places=4),
                included_seats=self.integer(body, "included_seats", path),
                extra_seat_price=self.money(body, "extra_seat_price", path, places=2),
                max_integrations=max_integrations,
                features=frozenset(feats),
            ))
        ranks = [p.rank for p in plans]
        if len(set(ranks)) != len(ranks):
            raise self.fail("plans.*.rank", "a different rank for every plan", ranks)
        return {p.name: p for p in sorted(plans, key=lambda p: p.rank)}

    def thresholds(self, raw: Any, plans: Mapping[str, Plan],
                   features: Mapping[str, str]) -> tuple[Threshold, ...]:
        if not isinstance(raw, list):
            raise self.fail("thresholds", "an array of tables ([[thresholds]])", raw)
        out = []
        for i, body in enumerate(raw):
            path = f"thresholds[{i}]"
            if not isinstance(body, dict):
                raise self.fail(path, "a table", body)
            self.no_extra(body, {"from", "to", "metric", "at"}, path)
            src, dst = self.text(body, "from", path), self.text(body, "to", path)
            for key, name in (("from", src), ("to", dst)):
                if name not in plans:
                    raise self.fail(f"{path}.{key}", f"a plan name ({', '.join(plans)})", name)
            if plans[dst].rank <= plans[src].rank:
                raise self.fail(f"{path}.to", f"a plan above {src!r} (thresholds lead up-tier)", dst)
            metric = self.text(body, "metric", path)
            feature = metric[len("feature:"):] if metric.startswith("feature:") else None
            if not (metric in BASE_METRICS or feature == "*" or feature in features):
                raise self.fail(f"{path}.metric",
                                "messages, seats, integrations, feature:* or feature:<name>", metric)
            out.append(Threshold(src, dst, metric, self.integer(body, "at", path, minimum=1)))
        return tuple(out)

    def downtier(self, raw: Any) -> DownTierRule:
        if not isinstance(raw, dict):
            raise self.fail("downtier", "a table", raw)
        self.no_extra(raw, {"enabled", "min_days_on_plan"}, "downtier")
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            raise self.fail("downtier.enabled", "true or false", enabled)
        days = self.integer(raw, "min_days_on_plan", "downtier") if "min_days_on_plan" in raw else 30
        return DownTierRule(enabled=enabled, min_days_on_plan=days)

    def verticals(self, raw: Mapping[str, Any], features: Mapping[str, str]) -> dict[str, Vertical]:
        words = ("label", "message", "messages", "seat", "seats", "integrations")
        out = {}
        for name, body in raw.items():
            path = f"verticals.{name}"
            if not isinstance(body, dict):
                raise self.fail(path, "a table", body)
            self.no_extra(body, {*words, "hipaa", "feature_names"}, path)
            hipaa = body.get("hipaa", False)
            if not isinstance(hipaa, bool):
                raise self.fail(f"{path}.hipaa", "true or false", hipaa)
            names = body.get("feature_names", {})
            if not isinstance(names, dict):
                raise self.fail(f"{path}.feature_names", "a table of feature = name", names)
            for feature in names:
                if feature not in features:
                    raise self.fail(f"{path}.feature_names.{feature}",
                                    f"a feature from [features] ({', '.join(features)})")
                self.text(names, feature, f"{path}.feature_names")
            out[name] = Vertical(name=name, hipaa=hipaa, feature_names=dict(names),
                                 **{w: self.text(body, w, path) for w in words})
        if "generic" not in out:
            raise self.fail("verticals.generic", "a table (the default framing)")
        return out
