"""The review service."""
