"""Local stand-ins that speak the real protocols: Looker API 4.0, Sheets API v4, Cloud Storage.

Used by `make demo`, the tests and the local topology. Never used in production.
"""
