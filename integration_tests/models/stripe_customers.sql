-- One row per customer: the rows this project syncs into Stripe.
select
    customer_id,
    email,
    first_name || ' ' || last_name as full_name,
    phone,
    street,
    city,
    postal_code,
    country_code,
    plan,
    locales,
    balance_cents,
    vip,
    signed_up_on
from {{ ref('crm_customers') }}
