"""Jobs that combine the layers below: evaluate, candidates, rank, experiment, quickstart."""
