"""The four Switchyard services; each is a thin shell over its domain module."""
