"""Execution: one model's rows from the warehouse's diff to Stripe and back to the state.

`engine` runs a model (its lock, its run record) with one of two peer executors: `upsert`
(match, plan and write each row) or `events` (the append ledger). Both stand on the same
pieces below them: `outcomes` (what a row's outcome does to the result and the state),
`pool` (the bounded thread pool), `options`.
"""
