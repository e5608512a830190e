"""Storage: the only package with SQL. The device database (schema, migrations, store),
the outbox of payload bytes, and where files live under the data dir."""
