"""Classic baselines and retrievers (scikit-learn and numpy; never torch)."""
