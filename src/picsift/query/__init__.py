"""Queries over the store: search by text or images, metadata filters and saved collections."""
