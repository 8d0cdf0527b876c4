"""The benchmark: dbt-stripe-sync vs a naive SDK loop vs the rate-limit floor.

`python -m benchmarks.run [--quick]`; see benchmarks/RESULTS.md for what is measured and why.
"""
