"""One declarative spec per Stripe object type (customer first)."""
