"""``cots plan``: what a configuration costs on N ranks, from shapes alone
(:mod:`models.planning.planner`), and the machine rates of its time model
(:mod:`models.planning.profile`)."""
