"""State stores: RocksDB (rocksdict) key/value stores with a write-back cache and checkpoints.

Stores know bytes, not protocols: keys and values are opaque. The runtime decides what to
put in them and when to flush (at commit), so the per-packet path never touches RocksDB.
"""

from wirestream.state.store import StateStore, StoreError

__all__ = ["StateStore", "StoreError"]
