"""A module of the test app whose import fails with something other than ImportError: a
forged run naming a path in it must be refused, not crash a worker's task thread."""

raise RuntimeError("this module refuses to be imported")
