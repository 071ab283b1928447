"""The classroom_event pack (pack.yaml); a package only so its files ship with Switchyard."""
