"""Database access: the models and the connections of an environment's database."""
