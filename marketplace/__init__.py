"""FedMarket: a decentralized marketplace for federated learning.

The library (no CLI code here): ``chain`` drives the contracts, ``storage`` moves content through
IPFS or the embedded store, ``crypto`` signs and encrypts, ``fl`` trains and aggregates,
``valuation`` scores contributions and ``oracle`` commits the scores on-chain.
"""

__version__ = "0.1.0"
