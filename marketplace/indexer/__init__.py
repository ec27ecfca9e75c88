"""A chain-and-IPFS indexer for read-only views of the marketplace (the dashboard's data).

:class:`~marketplace.indexer.indexer.Indexer` follows the deployment's contracts block by block,
decodes every event generically from the deployment's ABIs, fetches the committee's reports from
the content store, and writes it all incrementally into one SQLite file;
:class:`~marketplace.indexer.queries.IndexReader` answers the pages' questions from that file.
Everything stored comes from the chain or IPFS and is untrusted text: consumers must escape it.
"""

from marketplace.indexer.indexer import Indexer, IndexerConfig, SyncStats
from marketplace.indexer.queries import IndexReader

__all__ = ["IndexReader", "Indexer", "IndexerConfig", "SyncStats"]
