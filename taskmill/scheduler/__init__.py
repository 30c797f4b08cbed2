"""The scheduler: triggers, the fire transaction, misfires, dependencies, the loop.

Import from the submodules; this package stays empty so that importing it needs no models.
"""
