"""`ebb demo`: a job table in SQLite, a pool of real worker processes, and ebb scaling them 0 -> N -> 0."""
