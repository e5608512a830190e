"""From counts to a clinical answer: proportion intervals, the differential, the stop rule,
count estimates, flags and the session-level ALL call. Pure functions, standard library and
numpy only; no I/O."""
