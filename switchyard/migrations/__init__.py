"""Versioned SQL migrations (NNNN_name.sql), applied in order by switchyard._db.migrate."""
