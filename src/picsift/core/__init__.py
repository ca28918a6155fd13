"""The storage core: the catalog (SQLite; the only place SQL is written), the embedding store, the
incremental update, video frames and file actions. Imports nothing above :mod:`picsift.embedding`."""
