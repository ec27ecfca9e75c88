"""``fedmarket dashboard``: a read-only web view of the marketplace, live, on 127.0.0.1.

The pages are rendered on the server from the SQLite index that
:class:`marketplace.indexer.Indexer` keeps up to date; templates autoescape everything (all of
it came from the chain or IPFS), the Content-Security-Policy allows only this server's own
scripts, and the app holds no key and offers no write.
"""

from node.dashboard.app import create_app
from node.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "create_app"]
