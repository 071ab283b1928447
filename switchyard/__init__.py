"""Switchyard's shared package: the plumbing every service uses, and the generated contract.

Public names are re-exported here from private modules; import from ``switchyard``.
"""

from switchyard._settings import Settings, SettingsError, settings_reference_markdown

__all__ = ["Settings", "SettingsError", "settings_reference_markdown"]
__version__ = "0.1.0"
