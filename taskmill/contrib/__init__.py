"""Optional parts of taskmill built on its public API: each is used only when named."""
