"""Everything a run does before its loop, in one place: the starting model (`model`), the
checked inputs of an RL run (`inputs`), the run directory, tracker and Ray (`session`), and
the actors of each role (`roles`). Loops call into here; nothing here calls a loop."""
