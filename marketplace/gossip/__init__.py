"""Network gossip over Kubo pubsub: the task topics (:mod:`.topics`), signed update
announcements pulled by CID (:mod:`.update_gossip`), their binding to a task's on-chain
membership (:mod:`.membership`) and the gossip-averaging snapshot exchange
(:mod:`.snapshot_exchange`, the transport of :mod:`marketplace.fl.gossip_averaging`).

The message formats themselves live in :mod:`marketplace.crypto.announce`.
"""
