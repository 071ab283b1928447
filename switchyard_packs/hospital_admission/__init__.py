"""The hospital_admission pack (pack.yaml); a package so its files ship with Switchyard."""
