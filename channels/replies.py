"""How the engine's new reply rows are stored: the status says who gets them to the buyer.

The engine stores its replies `sent`: answered in the request itself (a webhook's TwiML, the
widget's POST). Two callers need another status, in the engine's own transaction:

- `queued` (storage.delivery.QUEUED): a channel of ours delivers them later. The spool's replay
  (there is no webhook answer to put them in) and the conversation API with `"deliver": true`:
  SMS and WhatsApp through the outbound dispatcher, web chat through the widget's next poll.
- `relayed` (storage.conversations.RELAYED): returned to the caller of the conversation API,
  who delivers them (or not); no channel of ours sends or shows them.

Rows stored by an earlier delivery are untouched: a repeated message writes nothing, so nothing
goes out twice.
"""

from __future__ import annotations

from core.routing import UNROUTED


def replies_stored_as(uow, status: str):
    """`uow` (a unit of work) with the engine's new reply rows stored with `status` instead of
    "sent". Replies, and a shared number's unrouted answers ("which business?", core.routing)."""
    return _RepliesStoredAs(uow, status)


class _RepliesStoredAs:
    def __init__(self, uow, status: str) -> None:
        self._uow = uow
        self._status = status

    def __enter__(self) -> _RepliesStoredAs:
        self._uow.__enter__()
        return self

    def __exit__(self, *exc: object):
        return self._uow.__exit__(*exc)

    def __getattr__(self, name: str):
        return getattr(self._uow, name)

    @property
    def conversations(self):
        return _StoringConversations(self._uow.conversations, self._status)


class _StoringConversations:
    def __init__(self, conversations, status: str) -> None:
        self._conversations = conversations
        self._status = status

    def __getattr__(self, name: str):
        return getattr(self._conversations, name)

    def add_message(self, **fields):
        if (fields.get("direction"), fields.get("status")) == ("out", "sent") and \
                fields.get("kind") in ("reply", UNROUTED):
            fields["status"] = self._status
        return self._conversations.add_message(**fields)
