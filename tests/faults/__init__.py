"""The fault suite: chaos soak, database trouble and hostile input (see docs/reliability.md)."""
