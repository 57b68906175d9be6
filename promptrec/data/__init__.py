"""The dataset model (users, items, interactions) and its loaders: MovieLens, tables, Amazon."""
