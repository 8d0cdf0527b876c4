"""dbt-stripe-activation: reverse ETL from dbt models into Stripe.

dbt imports every top-level module named ``dbt_*`` on each of its commands, so this file
stays import-light and never defines ``plugins``.
"""

__version__ = "0.1.0"
