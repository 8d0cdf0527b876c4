-- One row per price: recurring when billing_interval is set, one-time otherwise. The SKU
-- references the products model: the sync writes the Stripe id it synced that SKU to.
select
    lookup_key,
    sku,
    currency,
    amount_cents,
    nullif(billing_interval, '') as billing_interval,
    nickname
from {{ ref('catalogue_prices') }}
