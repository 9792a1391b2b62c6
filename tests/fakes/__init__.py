"""Fakes of services that cannot run on this machine, named as such (tests only)."""
