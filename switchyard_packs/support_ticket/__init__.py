"""The support_ticket pack (pack.yaml); a package only so its files ship with Switchyard."""
