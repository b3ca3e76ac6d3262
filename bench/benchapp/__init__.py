"""A bench-only Django app: the no-op command, trivial functions and jobs."""
