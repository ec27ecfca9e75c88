"""Content storage: one :class:`ContentStore` interface, a Kubo backend and an embedded one.

Also Kubo daemon control (:mod:`.kubo_daemon`) and pubsub over Kubo (:mod:`.pubsub`).
"""

from marketplace.storage.base import ContentStore
from marketplace.storage.cid import Cid, parse_cid, raw_cid, unixfs_cid
from marketplace.storage.embedded import EmbeddedStore
from marketplace.storage.kubo import KuboStore

__all__ = [
    "Cid",
    "ContentStore",
    "EmbeddedStore",
    "KuboStore",
    "parse_cid",
    "raw_cid",
    "unixfs_cid",
]
