"""The benchmark tasks as an installed Django app (taskmill runs tasks of installed apps)."""
