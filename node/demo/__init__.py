"""``fedmarket demo``: the whole marketplace in one run (:mod:`.scenario`) and its tables and
plots (:mod:`.summary`)."""
