-- Seats per subscription item (seat-based billing): the quantity Stripe bills.
select subscription_item_id, seats from {{ ref('seat_counts') }}
