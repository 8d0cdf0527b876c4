-- One row per product of the catalogue; the SKU is the Stripe product id.
select
    sku,
    product_name,
    description,
    unit_label,
    tier
from {{ ref('catalogue_products') }}
