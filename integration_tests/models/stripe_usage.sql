-- API calls per customer per day, one usage event each. The identifier is customer + day +
-- metric: stable, so a re-run never sends the same day twice. Days are relative to today,
-- as real usage is: Stripe takes meter events from the past 35 days only.
select
    customer_id || '-' || cast(current_date - days_ago as varchar) || '-api_calls' as event_id,
    customer_id,
    cast(current_date - days_ago as timestamp) as usage_day,
    sum(requests) as api_calls
from {{ ref('api_requests') }}
group by customer_id, days_ago
