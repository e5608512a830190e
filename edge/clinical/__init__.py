"""From counts to a clinical answer: proportion intervals, the differential, the stop rule,
count estimates, flags and the session-level ALL call. Pure functions, standard library only
(the profile, reports and the sync payload use them, and load no numpy); no I/O."""
