"""Web Push subscriptions: which browsers of which users want to be told, and where their push
service is (docs/architecture.md, "Web Push")."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from chat.errors import LimitReached
from chat.storage.base import StoreBase
from chat.storage.schema import push_subscriptions as subs
from chat.storage.statements import now_ms


@dataclass(frozen=True, slots=True)
class PushSubscription:
    id: int
    user_id: int
    endpoint: str
    p256dh: str
    auth: str
    label: str
    created_at: int


class PushSubscriptions(StoreBase):
    async def save_push_subscription(
        self, user_id: int, endpoint: str, p256dh: str, auth: str, label: str, *, limit: int
    ) -> PushSubscription:
        """Keep a browser's subscription; the same endpoint (the same browser subscribing again,
        for this account or another one that logged in there since) replaces its old row."""
        async with self._write() as conn:
            await conn.execute(delete(subs).where(subs.c.endpoint == endpoint))
            count = (
                await conn.execute(
                    select(func.count()).select_from(subs).where(subs.c.user_id == user_id)
                )
            ).scalar_one()
            if count >= limit:
                raise LimitReached(
                    f"You have {count} browsers set to be notified, the most there may be. "
                    "Remove one on your account page first."
                )
            created = now_ms()
            result = await conn.execute(
                insert(subs).values(
                    user_id=user_id,
                    endpoint=endpoint,
                    p256dh=p256dh,
                    auth=auth,
                    label=label,
                    created_at=created,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
        return PushSubscription(key[0], user_id, endpoint, p256dh, auth, label, created)

    async def push_subscriptions(self, user_ids: Collection[int]) -> list[PushSubscription]:
        """Every subscription of these users, oldest first."""
        if not user_ids:
            return []
        query = select(subs).where(subs.c.user_id.in_(list(user_ids))).order_by(subs.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            PushSubscription(r.id, r.user_id, r.endpoint, r.p256dh, r.auth, r.label, r.created_at)
            for r in rows
        ]

    async def remove_push_subscription(
        self, user_id: int, *, sub_id: int | None = None, endpoint: str | None = None
    ) -> bool:
        """The user takes one of their own subscriptions back (by id or endpoint)."""
        where = subs.c.user_id == user_id
        if sub_id is not None:
            where &= subs.c.id == sub_id
        if endpoint is not None:
            where &= subs.c.endpoint == endpoint
        async with self._write() as conn:
            return bool((await conn.execute(delete(subs).where(where))).rowcount)

    async def forget_push_subscriptions(self, user_id: int, *, keep: int | None = None) -> None:
        """Every browser of the user stops being notified (logged out everywhere), but `keep`."""
        where = subs.c.user_id == user_id
        if keep is not None:
            where &= subs.c.id != keep
        async with self._write() as conn:
            await conn.execute(delete(subs).where(where))

    async def drop_push_endpoint(self, endpoint: str) -> None:
        """The push service says this subscription is gone (404 or 410)."""
        async with self._write() as conn:
            await conn.execute(delete(subs).where(subs.c.endpoint == endpoint))
