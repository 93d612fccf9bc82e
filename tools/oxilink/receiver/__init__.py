"""The receiver side of the link: ingest from the broker, verify, store once, audit, export.

One job per module: `ingest` (paho loop, manual acks after commit), `verify` (registry lookup, COSE open,
replay window, value sanity), `registry` (devices and keys, rotation), `store` (SQLite, migrations) and
`store_pg` (PostgreSQL behind the same interface), `audit` (hash-chained log), `alerts` (failure bursts),
`fhir`, `export` and `plot` (data out). docs/receiver.md describes the whole.
"""
