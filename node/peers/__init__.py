"""The peer roles of a task, one shape: a :class:`~node.peers.base.Peer` whose ``step`` does the
one next thing it owes the task and returns a typed :class:`~node.peers.base.Step`, run by one
loop. :mod:`.trainer` trains each round and claims; :mod:`.oracle` scores, commits, reveals and
enforces; :mod:`.journal` is what either remembers across a crash."""
