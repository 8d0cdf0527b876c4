"""The contract every Stripe object fulfils: what differs between objects, declared once.

Nothing outside `objects/` names an object, a field or a key kind: the spec parser, the
matcher, the planner, the engine, the gateway and the SQL macros ask an `ObjectSpec`
(which SDK service, which fields, which keys and how each is looked up, which changes
mean a replacement, what archive and delete are) and behave accordingly. Adding an object
is a module in `objects/` declaring one `ObjectSpec`, its emulator resource, and
`class TestX(ObjectConformance)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# Objects' open maps of string values, keyed by the caller: `metadata.<key>` on most objects,
# `payload.<key>` on a meter event. A key may itself contain dots.
OPEN_MAPS = ("metadata", "payload")
METADATA_PREFIX = "metadata."


class ValueKind(str, Enum):
    STRING = "string"
    INTEGER = "integer"
    STRING_LIST = "string_list"
    ENUM = "enum"
    BOOLEAN = "boolean"
    DECIMAL = "decimal"  # sent as a decimal string (unit_amount_decimal)
    TIMESTAMP = "timestamp"  # a point in time, sent as Unix seconds


@dataclass(frozen=True)
class FieldSpec:
    """One mappable Stripe field path (``address.city``), with Stripe's limits for it."""

    path: str
    kind: ValueKind
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    # How messages name a long list of choices ("an ISO 4217 currency code").
    choices_name: str = ""
    create_only: bool = False
    # Posting "" unsets it (Stripe docs: "Literal['']" in the SDK's typed params).
    unsettable: bool = True
    description: str = ""
    # A shape Stripe enforces beyond length (email, invoice_prefix), checked by fullmatch,
    # and the reason a row is rejected when it does not match.
    pattern: str | None = None
    pattern_reason: str = ""
    minimum: int | None = None  # for INTEGER fields Stripe bounds (next_invoice_sequence >= 1)
    # Stripe stores the value lowercased (currency): compared and sent lowercased, so a
    # model's `USD` is not a change against Stripe's `usd` on every run.
    lowercase: bool = False
    # The object a field holds the id of (price.product -> "product"): a `{ref: model}`
    # mapping may fill it from another synced model's state.
    references: str | None = None


@dataclass(frozen=True)
class RowIssue:
    """Why one row cannot be sent: the Stripe field path (or key) and the reason."""

    field: str
    reason: str
    # The row may pass later as it is (an event timestamped ahead of now): retried on the
    # next run instead of reported as rejected until its data changes.
    retryable: bool = False

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class Behavior(str, Enum):
    """What a row does to Stripe. Each object lists the ones it supports."""

    UPDATE_OR_CREATE = "update_or_create"
    UPDATE_ONLY = "update_only"
    CREATE_ONLY = "create_only"  # a matched object is left alone and reported as skipped
    APPEND = "append"  # an event: each key is sent once, never updated (meter events)


class KeyLookup(str, Enum):
    """How a key is found in Stripe, strongly consistent in every case (never Search)."""

    RETRIEVE = "retrieve"  # GET /v1/<objects>/{id}
    FILTER = "filter"  # an exact list filter (email=, lookup_keys[]=)
    INDEX = "index"  # no filter: list every object once (100 a page) and index by the key
    LEDGER = "ledger"  # an event Stripe de-duplicates: never looked up, the state is the ledger


@dataclass(frozen=True)
class KeySpec:
    """One kind of key an object can be matched on."""

    kind: str  # "email", "id", "lookup_key", "metadata" (the field is metadata.<name>)
    lookup: KeyLookup
    list_filter: str | None = None  # the list parameter for FILTER ("email", "lookup_keys")
    filter_takes_list: bool = False  # lookup_keys[]=a&lookup_keys[]=b
    # Compared case-insensitively: Python (normalize_key) and SQL (macros' normalized_key,
    # passed this flag) lowercase it. Emails are; ids, lookup keys and metadata are not.
    casefold: bool = False
    # The key's own field is written on create, so the next run finds what it created
    # (email, lookup_key, metadata.<name>, a product's caller-chosen id). A customer id is
    # assigned by Stripe: nothing to write, so it can only update.
    written: bool = True
    max_length: int | None = None
    description: str = ""

    @property
    def can_create(self) -> bool:
        return self.written


METADATA_KEY = KeySpec(
    "metadata",
    KeyLookup.INDEX,
    max_length=500,
    description="a metadata value you set (an external id): matched by listing the objects",
)


@dataclass(frozen=True)
class ReplacePolicy:
    """An object whose fields Stripe never changes (a Price's amount, currency, recurring
    terms, product): a change to one of `fields` creates a new object carrying the key and
    archives the old one."""

    fields: frozenset[str]
    # Sent with the create when the key is a list-filter key (`transfer_lookup_key: true`
    # moves a price's lookup key off the old price atomically).
    create_extra_by_key: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    archive: Mapping[str, Any] = field(default_factory=lambda: {"active": False})
    # Fields updatable until set to one of these values, then fixed (a price's
    # tax_behavior once inclusive or exclusive): changing them from there is a replace.
    locked_once_set: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def forces(self, path: str, before: Any) -> bool:
        """Whether a change of `path` away from `before` needs a new object."""
        if path in self.fields:
            return True
        return before in self.locked_once_set.get(path, ())


@dataclass(frozen=True)
class CheckRequest:
    """The cheapest read `check` makes to test a restricted key's permission for an
    object: `client.v1.<service>.list(limit=1)` unless the object says otherwise."""

    method: str = "list"
    params: Mapping[str, Any] = field(default_factory=lambda: {"limit": 1})
    permission: str = ""  # the restricted-key permission it needs, for messages
    service: str | None = None  # another service to list (None: the object's own)


@dataclass(frozen=True)
class Requirement:
    """Field values must be among an attribute of listed objects (the active meters'
    event_name): one list request per run (`service`.list(**params)), before any write."""

    service: str  # "billing.meters"
    params: Mapping[str, Any]
    attribute: str  # the listed objects' attribute the field's values must be among
    what: str  # how messages name it: "an active meter"


@dataclass(frozen=True)
class RatePool:
    """Stripe's separate limits for an object's writes, apart from the account's global
    limit: endpoint ("POST /v1/billing/meter_events") -> (live, test) requests a second."""

    endpoints: Mapping[str, tuple[float, float]]
    source: str  # where the figures come from, for the docs

    def limits(self, mode: str) -> dict[str, float]:
        return {e: live if mode == "live" else test for e, (live, test) in self.endpoints.items()}


DASHBOARD = "https://dashboard.stripe.com"


@dataclass(frozen=True)
class DashboardPage:
    """Where the Stripe Dashboard shows an object: `<path>/<id>`, or its parent's page for
    an object that has none of its own (a subscription item: its subscription's), the
    parent's id read from the object's `parent_field`."""

    path: str  # "customers"
    parent_field: str | None = None


@dataclass(frozen=True)
class EventDelivery:
    """How an append object's rows reach Stripe, exactly once, when Stripe takes no
    idempotency key but de-duplicates the key for a while: a row is sent again after a lost
    answer only inside `resend_window_seconds`; the bulk transport takes `batch` events a
    request, each shaped by `as_stream_event` from the object's create params."""

    resend_window_seconds: int
    batch: int
    as_stream_event: Callable[[Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class ListedThrough:
    """Objects Stripe lists only under a parent (subscription items): the parent service is
    listed, each parent carries its children's first page in `children`, and the rest are
    listed with the child service filtered by `parent_filter`."""

    parent_service: str  # "subscriptions"
    children: str  # "items"
    parent_filter: str  # "subscription"


@dataclass(frozen=True)
class GroupLimit:
    """At most `per_hour` updates of `fields` per parent object (a subscription's items:
    200 quantity changes an hour). The parent is the objects' `attribute`."""

    attribute: str
    fields: tuple[str, ...]
    per_hour: int


class RemovalMode(str, Enum):
    """`on_removed`: what a sync does to the Stripe object of a key that left the model."""

    IGNORE = "ignore"  # report it, leave Stripe as it is (the default)
    ARCHIVE = "archive"
    DELETE = "delete"


@dataclass(frozen=True)
class RemovalPolicy:
    """What `on_removed` may do to an object: Stripe's own archived state (a product's or
    price's active=false) and what undoes it, a metadata flag the user names for objects
    with no archived state (customers), a permanent delete, or nothing at all (`never`
    says why)."""

    archive: Mapping[str, Any] | None = None
    restore: Mapping[str, Any] | None = None
    archive_by_flag: bool = False
    delete: bool = False
    delete_note: str = ""  # what a delete does beyond the object (the README repeats it)
    never: str = ""

    @property
    def modes(self) -> tuple[RemovalMode, ...]:
        if self.never:
            return (RemovalMode.IGNORE,)
        modes = [RemovalMode.IGNORE]
        if self.archive is not None or self.archive_by_flag:
            modes.append(RemovalMode.ARCHIVE)
        if self.delete:
            modes.append(RemovalMode.DELETE)
        return tuple(modes)


@dataclass(frozen=True)
class ObjectSpec:
    """Declarative description of one Stripe object type."""

    name: str  # "customer"
    service: str  # the SDK service: client.v1.<service> ("customers")
    fields: Mapping[str, FieldSpec]
    keys: Mapping[str, KeySpec]  # by kind; "metadata" covers every metadata.<name>
    behaviors: tuple[Behavior, ...] = (
        Behavior.UPDATE_OR_CREATE,
        Behavior.UPDATE_ONLY,
        Behavior.CREATE_ONLY,
    )
    # The object's open map (`metadata`, or a meter event's `payload`) and Stripe's limits.
    open_map: str = "metadata"
    metadata_max_keys: int = 50
    metadata_key_max_length: int = 40
    metadata_value_max_length: int = 500
    # Groups Stripe requires whole (shipping needs name and address.line1).
    required_together: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Fields Stripe requires when it creates the object (a product's name).
    required_on_create: tuple[str, ...] = ()
    # Fields of which at most one may be mapped (unit_amount or unit_amount_decimal).
    exclusive: tuple[tuple[str, ...], ...] = ()
    # Groups of which a model that creates must map one (a price's amount).
    create_needs_one_of: tuple[tuple[str, ...], ...] = ()
    # A field that, mapped by a model that creates, needs others too (amount: currency).
    required_with_on_create: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Paths Stripe returns only when expanded: path prefix -> expand value ("tax." -> "tax").
    read_expand: Mapping[str, str] = field(default_factory=dict)
    replace: ReplacePolicy | None = None
    # What `on_removed` may do when a key leaves the model.
    removal: RemovalPolicy = field(default_factory=RemovalPolicy)
    check: CheckRequest = field(default_factory=CheckRequest)
    # Row rules beyond single fields (flat path -> converted value), each failure a reason.
    validate_row: Callable[..., list[RowIssue]] | None = None
    # Block settings sent with every write rather than mapped from a column
    # (a subscription item's proration_behavior): setting -> (choices, default).
    request_settings: Mapping[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    # Objects a field must name an existing one of, checked once per run before any write
    # (a meter event's event_name must be an active meter's).
    requires: Mapping[str, Requirement] = field(default_factory=dict)
    # Its own rate-limit pool, apart from the account's global limit (meter events).
    rate_pool: RatePool | None = None
    group_limit: GroupLimit | None = None
    listed_through: ListedThrough | None = None
    # Append objects: the ledger's resend window and the bulk transport (meter events).
    delivery: EventDelivery | None = None
    dashboard: DashboardPage | None = None  # None: the Dashboard has no page for one
    # Stripe's error codes for a write refused because the object is final (an item of a
    # finalized invoice): the row is `locked`, not rejected, and nothing is retried.
    locked_codes: tuple[str, ...] = ()

    def dashboard_url(self, mode: str, stripe_id: str | None, account: str | None = None,
                      values: Mapping[str, Any] | None = None) -> str | None:
        """The object's Dashboard page for a key of `mode` ("test" pages live under /test/),
        in a connected account's Dashboard when `account` is set; `values` are the object's
        (a parent's id). None when the object has no page or no id yet."""
        page = self.dashboard
        if page is None:
            return None
        shown = (values or {}).get(page.parent_field) if page.parent_field else stripe_id
        if not shown:
            return None
        prefix = f"{DASHBOARD}/{account}" if account else DASHBOARD
        return f"{prefix}{'/test' if mode != 'live' else ''}/{page.path}/{shown}"

    @property
    def open_prefix(self) -> str:
        return self.open_map + "."
    def key_spec(self, key_field: str) -> KeySpec | None:
        """The KeySpec of a key field ("email", "metadata.crm_id"), None if not a key."""
        if key_field.startswith("metadata."):
            return self.keys.get("metadata")
        return self.keys.get(key_field)

    @property
    def key_choices(self) -> tuple[str, ...]:
        """The key fields as a user writes them: ("email", "id", "metadata.<name>")."""
        return tuple(k if k != "metadata" else "metadata.<name>" for k in self.keys)

    def field_references(self, path: str) -> str | None:
        target = self.fields.get(path)
        return target.references if target is not None else None
