"""rankscope.store: the embedded SQLite run catalog plus one directory per run."""

from rankscope.store.catalog import (
    DEFAULT_STORE,
    RunInfo,
    Store,
    StoreError,
    default_store_path,
)

__all__ = ["DEFAULT_STORE", "RunInfo", "Store", "StoreError", "default_store_path"]
