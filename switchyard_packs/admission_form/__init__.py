"""The admission_form pack (pack.yaml); a package only so its files ship with Switchyard."""
